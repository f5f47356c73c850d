// The PromQL subset that scripts/render-dashboard.mjs evaluates to draw the dashboard's picture:
// it must agree with Prometheus where the dashboard relies on it, and must cover every query of
// deploy/grafana/agentgate.json, so that the picture can still be drawn after a panel changes.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Samples, bucketQuantile, extrapolatedDelta, parse, parseExposition, queryRange, type Scrape } from '../../scripts/dashboard/promql.mjs';

/** One scrape a second of `text(t)` for t = 0..seconds. */
function scrapes(seconds: number, text: (t: number) => string): Scrape[] {
  return Array.from({ length: seconds + 1 }, (_, t) => ({ t, series: parseExposition(text(t), { job: 'agentgate', instance: 'a:1' }) }));
}
const last = (points: Array<[number, number]>) => points[points.length - 1]![1];

describe('rate and increase', () => {
  it('extrapolate as Prometheus does: to the window edges, never below zero', () => {
    // Samples every second over a window of exactly their span: no extrapolation.
    expect(extrapolatedDelta([[1, 10], [2, 11], [3, 12], [4, 13], [5, 14]], 1, 5, false)).toBeCloseTo(4);
    // A window 1 s wider on each side: half a sample interval is added at each end.
    expect(extrapolatedDelta([[1, 10], [2, 11], [3, 12], [4, 13], [5, 14]], -0.5, 6.5, false)).toBeCloseTo(5);
    // A counter that started at 0 inside the window extrapolates only to where it was 0.
    expect(extrapolatedDelta([[1, 0], [2, 1], [3, 2]], 0, 3, true)).toBeCloseTo(2 / 3);
    // A reset counts what was there before it.
    expect(extrapolatedDelta([[1, 5], [2, 7], [3, 1]], 1, 3, false)).toBeCloseTo(3);
    expect(extrapolatedDelta([[1, 5]], 0, 3, false)).toBeUndefined();
  });

  it('sum by keeps the listed labels and drops the others', () => {
    const samples = new Samples(
      scrapes(30, (t) => `agentgate_conn_total{code="ok"} ${2 * t}\nagentgate_conn_total{code="AGENT_DISCONNECTED"} ${t}\n`),
    );
    const byCode = queryRange('sum by (code) (rate(agentgate_conn_total{job=~".*"}[10s]))', samples, { start: 20, end: 30, step: 5 });
    expect(byCode.map((s) => s.labels)).toEqual([{ code: 'ok' }, { code: 'AGENT_DISCONNECTED' }]);
    expect(last(byCode[0]!.points)).toBeCloseTo(2);
    expect(last(byCode[1]!.points)).toBeCloseTo(1);
    const share = queryRange(
      'sum(rate(agentgate_conn_total{code!~"ok|client_closed"}[10s])) / sum(rate(agentgate_conn_total[10s]))',
      samples,
      { start: 30, end: 30, step: 1 },
    );
    expect(share).toHaveLength(1);
    expect(last(share[0]!.points)).toBeCloseTo(1 / 3);
  });
});

describe('histogram_quantile', () => {
  it('interpolates inside the bucket the rank falls in, as Prometheus does', () => {
    const buckets = [
      { le: 0.1, count: 50 },
      { le: 0.5, count: 90 },
      { le: 1, count: 100 },
      { le: Infinity, count: 100 },
    ];
    expect(bucketQuantile(0.5, buckets)).toBeCloseTo(0.1);
    expect(bucketQuantile(0.7, buckets)).toBeCloseTo(0.1 + 0.4 * (20 / 40));
    expect(bucketQuantile(0.99, buckets)).toBeCloseTo(0.5 + 0.5 * (9 / 10));
    // A rank in the +Inf bucket is the highest finite bound.
    expect(bucketQuantile(0.99, [{ le: 0.1, count: 1 }, { le: Infinity, count: 10 }])).toBe(0.1);
    expect(bucketQuantile(0.5, [{ le: 0.1, count: 0 }, { le: Infinity, count: 0 }])).toBeNaN();
  });

  it('groups the buckets of each label set apart', () => {
    const text = (t: number) =>
      [
        `agentgate_dial_seconds_bucket{le="0.01",result="ok"} ${t}`,
        `agentgate_dial_seconds_bucket{le="+Inf",result="ok"} ${t}`,
        `agentgate_dial_seconds_bucket{le="0.01",result="timeout"} 0`,
        `agentgate_dial_seconds_bucket{le="0.5",result="timeout"} ${t}`,
        `agentgate_dial_seconds_bucket{le="+Inf",result="timeout"} ${t}`,
      ].join('\n');
    const result = queryRange('histogram_quantile(0.5, sum by (le, result) (rate(agentgate_dial_seconds_bucket[10s])))', new Samples(scrapes(20, text)), {
      start: 20,
      end: 20,
      step: 1,
    });
    expect(Object.fromEntries(result.map((s) => [s.labels.result, last(s.points)]))).toEqual({ ok: 0.005, timeout: 0.255 });
  });
});

describe('the subset', () => {
  it('refuses what it does not evaluate', () => {
    expect(() => parse('irate(x[5m])')).toThrow(/unsupported function irate/);
    expect(() => parse('sum(x) by (a)')).toThrow(/sum by/);
    expect(() => parse('x offset 5m')).toThrow(/unexpected/);
  });

  it("covers every query of the dashboard once Grafana's variables are substituted", () => {
    const dashboard = JSON.parse(readFileSync(new URL('../../deploy/grafana/agentgate.json', import.meta.url), 'utf8')) as {
      panels: Array<{ targets?: Array<{ expr: string }>; panels?: Array<{ targets?: Array<{ expr: string }> }> }>;
    };
    const exprs = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(20);
    for (const expr of exprs) {
      const substituted = expr.replaceAll('$__rate_interval', '10s').replaceAll('$__range', '60s').replaceAll('$job', '.*').replaceAll('$instance', '.*');
      expect(() => parse(substituted), expr).not.toThrow();
    }
  });
});
