// A shared dial hands each waiter a lease of its own the moment it settles: no gap in which an
// eviction could close the connection before a waiter holds it (contract §5 steps 6 and 10).
import { describe, expect, it, vi } from 'vitest';
import type { AgentConnection } from '../../src/transport/agent-transport.js';
import { ConnCache, type Lease } from '../../src/gate/conn-cache.js';
import { SharedDials } from '../../src/gate/shared-dials.js';

function fakeConnection(agentId: string): AgentConnection & { closes: number } {
  const conn = {
    agentId,
    target: { agentId, workspaceId: 'w', address: 'http://127.0.0.1:1' },
    closes: 0,
    get closed() {
      return conn.closes > 0;
    },
    close: vi.fn(async () => {
      conn.closes += 1;
    }),
    onLost: () => () => undefined,
  };
  // why: the cache only reads these members of a connection.
  return conn as unknown as AgentConnection & { closes: number };
}

describe('lease sharing', () => {
  it('a lease shared before an eviction keeps the connection open until the last lease returns', () => {
    const cache = new ConnCache({ max: 10, idleMs: 60_000 });
    const conn = fakeConnection('a');
    const own = cache.add(conn);
    const shared = [own.share(), own.share()];
    cache.evict('a');
    own.release();
    expect(conn.closes).toBe(0);
    expect(cache.peek('a')).toBeUndefined();
    shared[0]!.release();
    expect(conn.closes).toBe(0);
    shared[1]!.release();
    expect(conn.closes).toBe(1);
    void cache.close();
  });

  it('markBroken evicts only the connection it leases, never a newer one', () => {
    const cache = new ConnCache({ max: 10, idleMs: 60_000 });
    const old = cache.add(fakeConnection('a'));
    const fresh = cache.add(fakeConnection('a'));
    old.markBroken();
    expect(cache.peek('a')).toBe(fresh.conn);
    fresh.markBroken();
    expect(cache.has('a')).toBe(false);
    old.release();
    fresh.release();
    void cache.close();
  });
});

describe('SharedDials hand-off', () => {
  it('every waiter is handed its own lease as the dial settles; the dial’s own lease is returned after', async () => {
    const cache = new ConnCache({ max: 10, idleMs: 60_000 });
    const conn = fakeConnection('a');
    const events: string[] = [];
    const dials = new SharedDials<Lease>({
      handOut: (lease) => {
        events.push('hand-out');
        return lease.share();
      },
      settled: (lease) => {
        events.push('settled');
        lease.release();
      },
    });
    let finish!: () => void;
    const start = () => new Promise<Lease>((resolve) => (finish = () => resolve(cache.add(conn))));
    const signal = new AbortController().signal;
    const waiting = [dials.join('a', signal, 5_000, start), dials.join('a', signal, 5_000, start), dials.join('a', signal, 5_000, start)];
    finish();
    // An eviction as early as anything else can run: before any waiter resumes.
    await Promise.resolve();
    cache.evict('a');
    const leases = (await Promise.all(waiting)).map((r) => r.value);
    expect(events).toEqual(['hand-out', 'hand-out', 'hand-out', 'settled']);
    expect(conn.closes).toBe(0);
    for (const lease of leases) expect(lease.conn).toBe(conn);
    for (const lease of leases) lease.release();
    expect(conn.closes).toBe(1);
    void cache.close();
  });

  it('a dial that settles after every waiter left hands nothing out and still returns its lease', async () => {
    const settled = vi.fn();
    const handOut = vi.fn((v: string) => v);
    const dials = new SharedDials<string>({ handOut, settled });
    const controller = new AbortController();
    let finish!: () => void;
    const left = dials.join('a', controller.signal, 5_000, () => new Promise<string>((resolve) => (finish = () => resolve('conn'))));
    controller.abort();
    await expect(left).rejects.toMatchObject({ code: 'AGENTGATE_CALLER_GONE' });
    finish();
    await vi.waitFor(() => expect(settled).toHaveBeenCalledWith('conn'));
    expect(handOut).not.toHaveBeenCalled();
  });
});
