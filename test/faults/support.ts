// What every fault scenario measures: how long each call waited (against the configured
// bounds), what it answered, and whether the scenario leaked handles or sockets.
import { setTimeout as sleep } from 'node:timers/promises';
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

/** An app whose database pool is known. */
export interface Quiescent {
  handle: { pool: { pg: { totalCount: number; idleCount: number } } };
}

/** Something that counts the connections it relays (the fault proxy). */
interface Relay {
  readonly open: number;
}

/**
 * Counts of this process's active handles by type (sockets, timers, servers...), the database
 * connections (and their idle timers) left out: the pool grows and shrinks with concurrency within its bound, and is
 * checked on its own (expectNoLeak).
 */
export async function snapshot(t: Quiescent): Promise<Record<string, number>> {
  await sleep(20);
  const counts = handles();
  const relay = relays.get(t);
  // Direct: one socket per pool connection. Through an in-process fault proxy: three per
  // relayed connection (the app's, and the proxy's two), the pool's and those still closing.
  const dbSockets = relay ? 3 * relay.open : t.handle.pool.pg.totalCount;
  counts.TCPSocketWrap = Math.max(0, (counts.TCPSocketWrap ?? 0) - dbSockets);
  // Each idle pool connection holds a timer of its own (its idle timeout).
  counts.Timeout = Math.max(0, (counts.Timeout ?? 0) - t.handle.pool.pg.idleCount);
  return counts;
}

const relays = new WeakMap<Quiescent, Relay>();

/** The pool size of the apps under test (src/db/database.ts). */
const POOL_MAX = 10;

/** Says that this app's database connections run through an in-process fault proxy. */
export function poolThroughProxy(t: Quiescent, proxy: Relay): void {
  relays.set(t, proxy);
}

function handles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

const SOCKETS = ['TCPSocketWrap', 'TCPWRAP', 'PipeWrap'];
const sockets = (h: Record<string, number>) => SOCKETS.reduce((n, type) => n + (h[type] ?? 0), 0);

/**
 * Asserts that open sockets and handles came back to where they were before the scenario
 * (within `slack`, for pool connections that may legitimately be re-opened meanwhile).
 */
export async function expectNoLeak(t: Quiescent, before: Record<string, number>, slack = 2): Promise<void> {
  const total = (h: Record<string, number>) => Object.values(h).reduce((a, b) => a + b, 0);
  let now: Record<string, number> = {};
  try {
    await eventually(
      async () => {
        now = await snapshot(t);
        // Relayed database connections: the pool's (at most its max), the LISTEN one, and those
        // still opening or closing after a fault (at most as many again); more is a leak.
        const relayed = relays.get(t)?.open ?? 0;
        const dbOk = relayed <= 2 * POOL_MAX + 1;
        return dbOk && sockets(now) <= sockets(before) + slack && total(now) <= total(before) + slack;
      },
      5_000,
    );
  } catch {
    const relayed = relays.get(t)?.open;
    throw new Error(
      `handles did not come back to ${JSON.stringify(before)} (+${slack}): ${JSON.stringify(now)}, pool ${t.handle.pool.pg.totalCount}, relayed ${String(relayed)}`,
    );
  }
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
