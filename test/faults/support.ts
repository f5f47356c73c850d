// What every fault scenario measures: how long each call waited (against the configured
// bounds), what it answered, and whether the scenario leaked handles or sockets.
import { Agent, setGlobalDispatcher } from 'undici';
import { expect } from 'vitest';
import type { Reply } from '../support/app.js';
import { eventually } from '../support/eventually.js';

/**
 * Load shedding off (0) for the apps of these suites: on a loaded test machine a stalled
 * sample reads as an infinite lag, and an OVERLOADED answer would be the machine's noise, not
 * the fault's. Shedding has its own test.
 */
export const UNSHED_MS = 0;

export interface Timed<T> {
  r: T;
  ms: number;
}

export async function timed<T>(fn: () => Promise<T>): Promise<Timed<T>> {
  const started = performance.now();
  const r = await fn();
  return { r, ms: performance.now() - started };
}

export { eventually };

/** 'ok' for a 2xx of the gate, 'agent <status>' for the agent's own answer, else status and code. */
export function outcome(r: Reply): string {
  if (r.headers.get('x-agentgate-upstream') === 'agent') return `agent ${r.status}`;
  return r.status >= 200 && r.status < 300 ? 'ok' : `${r.status} ${String(r.body?.code)}`;
}

/** The longest wait of a batch of calls, for the closing table of worst cases. */
export const worst = (calls: Array<Timed<unknown>>): number => Math.round(Math.max(0, ...calls.map((c) => c.ms)));

/**
 * Test calls without keep-alive: each call's connection closes with its answer, so the
 * sockets counted are the app's own, and no call races the close of an idle socket.
 */
export function callsWithoutKeepAlive(): void {
  setGlobalDispatcher(new Agent({ pipelining: 0 }));
}

/** Worst-case waits observed, printed once per file: the figures the closing note reports. */
export class WorstCases {
  readonly #rows: Array<{ scenario: string; worstMs: number; boundMs: number; outcomes: string }> = [];

  record(scenario: string, calls: Array<Timed<Reply>>, boundMs: number): void {
    const counts = new Map<string, number>();
    for (const c of calls) counts.set(outcome(c.r), (counts.get(outcome(c.r)) ?? 0) + 1);
    const worstMs = worst(calls);
    this.#rows.push({ scenario, worstMs, boundMs, outcomes: [...counts].map(([k, v]) => `${k} x${v}`).join(', ') });
    expect(worstMs, `${scenario}: worst wait against its bound`).toBeLessThanOrEqual(boundMs);
  }

  print(title: string): void {
    if (this.#rows.length === 0) return;
    const lines = this.#rows.map((r) => `| ${r.scenario} | ${r.worstMs} | ${r.boundMs} | ${r.outcomes} |`);
    process.stdout.write(`\n${title}\n| scenario | worst ms | bound ms | answers |\n|---|---:|---:|---|\n${lines.join('\n')}\n`);
  }
}
