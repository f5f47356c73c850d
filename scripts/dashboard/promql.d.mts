// Types of promql.mjs, for the tests that check it against Prometheus's semantics.
export interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface Scrape {
  t: number;
  series: Series[];
}
export declare class Samples {
  constructor(scrapes: Scrape[]);
}
export type Node = { type: string };
export declare function parse(expr: string): Node;
export declare function parseDuration(text: string): number;
export declare function extrapolatedDelta(points: Array<[number, number]>, rangeStart: number, rangeEnd: number, isRate: boolean): number | undefined;
export declare function bucketQuantile(q: number, buckets: Array<{ le: number; count: number }>): number;
export declare function queryRange(
  expr: string,
  samples: Samples,
  range: { start: number; end: number; step: number },
): Array<{ labels: Record<string, string>; points: Array<[number, number]> }>;
export declare function parseExposition(text: string, extraLabels?: Record<string, string>): Series[];
