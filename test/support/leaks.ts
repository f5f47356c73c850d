// Whether a test left handles or sockets behind: counts of this process's active resources
// before and after, the database pool's own connections accounted for.
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually } from './eventually.js';

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
