// The gate under stress and failure (contract §5 steps 9-13): eviction races never surface as
// transport errors, a database outage is survived on cached connections, rebuilds during a
// dial are noticed, replicas close their connections through NOTIFY, and the metrics show it.
import { GateSigningKey } from '../../src/auth/gate-signing-key.js';
import type http from 'node:http';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent as UndiciAgent, request } from 'undici';
import { ENV_ADMIN_TOKEN, parseBody, startAppBehindFaultProxy, startTestApp, type AppBehindProxy, type Reply, type TestApp } from '../support/app.js';
import { agentFixtures, type FakeAgent } from '../support/agents.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/eventually.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { AgentRows, conn, createWorkspace, startBuild, type RegisteredAgent, type Workspace } from '../support/gate-fixtures.js';
import { UNSHED_MS } from '../faults/support.js';
import { expectNoLeak, snapshot } from '../support/leaks.js';
import { ConnCache } from '../../src/gate/conn-cache.js';
import { dialAgent } from '../../src/transport/http/dial.js';
import type { HttpConnection } from '../../src/transport/http/connection.js';

type Rows = AgentRows & { close(): Promise<void> };

const { agent } = agentFixtures();

// why: pino lines are JSON with arbitrary fields; tests look up a few of them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type LogLine = Record<string, any>;
const parseLines = (lines: string[]): LogLine[] => lines.map((line) => JSON.parse(line) as LogLine);
const parsedLogs = (t: TestApp): LogLine[] => parseLines(t.logs);

/** Holds the agent's health checks until released: a dial kept in flight for as long as a test needs. */
function holdHealth(a: FakeAgent): { arrived(n?: number): Promise<void>; release(): void } {
  const held: http.ServerResponse[] = [];
  let seen = 0;
  a.handle = (req, res) => {
    if (!req.url?.endsWith('/health')) return false;
    seen += 1;
    held.push(res);
    return true;
  };
  return {
    arrived: (n = 1) => eventually(() => seen >= n, 5_000, `${n} health check(s) arriving`),
    release: () => {
      for (const res of held.splice(0)) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"status":"ok"}');
      }
    },
  };
}

/** Resolves when every socket the agent accepted so far has closed. */
const allClosed = (a: FakeAgent) => a.sockets.waitClosed(a.sockets.opened);

describe('eviction races never surface as transport errors (contract §5 steps 10, 12)', () => {
  async function dialed(a: FakeAgent): Promise<HttpConnection> {
    return dialAgent(
      { agentId: randomUUID(), workspaceId: randomUUID(), address: a.address },
      { signingKey: GateSigningKey.generate(), timeoutMs: 2_000, connectTimeoutMs: 2_000, headersTimeoutMs: 2_000, signal: new AbortController().signal },
    );
  }

  it('a lease taken before an eviction keeps its pool usable; the pool closes only on release', async () => {
    const a = await agent();
    const cache = new ConnCache({ max: 10, idleMs: 60_000 });
    const c = await dialed(a);
    cache.add(c).release();
    const lease = cache.acquire(c.agentId)!;
    expect(lease.conn).toBe(c);

    expect(cache.evict(c.agentId)).toBe(true);
    expect(cache.has(c.agentId)).toBe(false);
    expect(cache.acquire(c.agentId)).toBeUndefined();
    expect(c.closed).toBe(false);

    const r = await (lease.conn as HttpConnection).pool.request({ method: 'GET', path: '/health' });
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('{"status":"ok"}');
    // Proves a negative: nothing closes the leased pool meanwhile.
    await sleep(100);
    expect(c.closed).toBe(false);
    expect(c.pool.closed).toBe(false);
    expect(a.sockets.opened).toBeGreaterThanOrEqual(1);
    expect(a.sockets.closed).toBe(0);

    lease.release();
    expect(c.closed).toBe(true);
    await allClosed(a);
    expect(c.pool.closed).toBe(true);
    // A second release is a no-op.
    lease.release();
    expect(a.sockets.closed).toBe(a.sockets.opened);
  });

  it('LRU eviction spares a leased pool, and a request in flight when the lease is returned finishes', async () => {
    const [a, b] = [await agent(), await agent()];
    a.handle = (req, res) => {
      if (req.url !== '/slow') return false;
      setTimeout(() => res.end('slow done'), 150);
      return true;
    };
    const cache = new ConnCache({ max: 1, idleMs: 60_000 });
    const ca = await dialed(a);
    const lease = cache.add(ca);
    // The second connection pushes the first out of a cache of one.
    cache.add(await dialed(b)).release();
    expect(cache.has(ca.agentId)).toBe(false);
    expect(cache.size).toBe(1);
    expect(ca.closed).toBe(false);

    const inFlight = (lease.conn as HttpConnection).pool.request({ method: 'GET', path: '/slow' });
    await eventually(() => a.requests.some((r) => r.url === '/slow'));
    lease.release();
    expect(ca.closed).toBe(true);
    const r = await inFlight;
    expect(r.statusCode).toBe(200);
    expect(await r.body.text()).toBe('slow done');
    await allClosed(a);
    expect(b.sockets.closed).toBe(0);
    await cache.close();
    await allClosed(b);
  });

  it('idle expiry closes an unleased pool by itself; a leased one counts as in use until released', async () => {
    const [a, b] = [await agent(), await agent()];
    const sizes: number[] = [];
    const cache = new ConnCache({ max: 10, idleMs: 50, onSizeChange: (n) => sizes.push(n) });
    try {
      const idle = await dialed(a);
      cache.add(idle).release();
      const held = await dialed(b);
      const lease = cache.add(held);
      await a.sockets.waitClosed(1);
      expect(idle.closed).toBe(true);
      await eventually(() => !cache.has(idle.agentId));
      // Held (a long stream, a WebSocket) for several idle periods: still cached, still open.
      await sleep(200);
      expect(cache.has(held.agentId)).toBe(true);
      expect(held.closed).toBe(false);
      expect(b.sockets.closed).toBe(0);
      const r = await (lease.conn as HttpConnection).pool.request({ method: 'GET', path: '/health' });
      expect(r.statusCode).toBe(200);
      await r.body.dump();
      lease.release();
      // Released, it idles out like any other.
      await eventually(() => cache.size === 0);
      await allClosed(b);
      expect(held.closed).toBe(true);
      expect(sizes.at(-1)).toBe(0);
    } finally {
      await cache.close();
    }
  });

  it('a leased connection stays cached when the event loop lags past the idle time and the sweep runs late', async () => {
    const [a, b] = [await agent(), await agent()];
    const cache = new ConnCache({ max: 10, idleMs: 50 });
    try {
      const held = await dialed(a);
      const lease = cache.add(held);
      const idle = await dialed(b);
      cache.add(idle).release();
      // A busy machine: no timer runs for three idle periods, so every entry is stale when the
      // loop comes back, whichever runs first of the sweep and the calls below.
      const until = performance.now() + 150;
      while (performance.now() < until);
      expect(cache.has(held.agentId)).toBe(true);
      expect(cache.peek(held.agentId)).toBe(held);
      expect(cache.has(idle.agentId)).toBe(false); // idle: expired as it should be
      const second = cache.acquire(held.agentId);
      expect(second?.conn).toBe(held);
      await sleep(120); // late or not, the sweeps keep it
      expect(cache.has(held.agentId)).toBe(true);
      expect(held.closed).toBe(false);
      second?.release();
      lease.release();
      await eventually(() => !cache.has(held.agentId));
      await allClosed(a);
      expect(held.closed).toBe(true);
    } finally {
      await cache.close();
    }
  });

  it('a leased connection gone stale while the event loop lagged is still evicted with its workspace, and closed on shutdown', async () => {
    const [a, b] = [await agent(), await agent()];
    const cache = new ConnCache({ max: 10, idleMs: 50 });
    const held = await dialed(a);
    const other = await dialed(b);
    const lease = cache.add(held);
    const otherLease = cache.add(other);
    try {
      const until = performance.now() + 150;
      while (performance.now() < until);
      // Both stale, both leased: the workspace's entry goes, the other stays.
      expect(cache.evictWorkspace(held.target.workspaceId)).toBe(1);
      expect(cache.has(held.agentId)).toBe(false);
      await sleep(120); // no sweep brings it back
      expect(cache.has(held.agentId)).toBe(false);
      expect(held.closed).toBe(false); // still leased
      lease.release();
      await eventually(() => held.closed);
      // Shutdown while the other entry is stale again: it is closed and awaited too.
      const until2 = performance.now() + 150;
      while (performance.now() < until2);
      otherLease.release();
      await cache.close();
      expect(other.closed).toBe(true);
      await allClosed(b);
    } finally {
      lease.release();
      otherLease.release();
      await cache.close();
    }
  });

  // contract §5 step 10 under load: tool calls proxied through the gate hold their connection (a
  // lease) while the events that evict connections happen, each through the route that causes
  // it in production: rebuilds (POST /workspaces/:id/builds), goodbyes and reconnects (the
  // agent routes), and the cache's own bound (LRU) or idle expiry. Every call must end with
  // the agent's own answer or a contract §6 sentinel, none may hang, and nothing may be left open.
  const N_WORKSPACES = 20;
  const WAVES = 8;
  const PER_WAVE = 50;
  const DIAL_MS = 2_000;
  const DB_MS = 1_000;
  const HEADERS_MS = 2_000;
  /** contract §5 step 9's bound on a proxied call, with room for a loaded machine: a call open past it hangs. */
  const HANG_MS = DIAL_MS + 2 * DB_MS + HEADERS_MS + 4_000;

  interface ToolRoute {
    /** Calls made with `?hold=release` that the agent holds until `release()`. */
    holding(): number;
    /** Answers every call held so far; returns their paths. */
    release(): string[];
  }

  /**
   * A tool route answering with who answered what: after `?hold=<ms>`, or, with
   * `?hold=release`, only when the test releases it (a call held across an eviction).
   */
  function toolRoute(a: FakeAgent): ToolRoute {
    const held = new Map<string, () => void>();
    a.handle = (req, res) => {
      const url = new URL(req.url ?? '/', 'http://agent');
      if (!url.pathname.startsWith('/tool/')) return false;
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ port: a.port, url: req.url }));
      };
      const hold = url.searchParams.get('hold') ?? '0';
      if (hold === 'release') held.set(url.pathname, answer);
      else setTimeout(answer, Number(hold));
      return true;
    };
    return {
      holding: () => held.size,
      release: () => {
        const paths = [...held.keys()];
        for (const answer of held.values()) answer();
        held.clear();
        return paths;
      },
    };
  }

  it.each<[string, Record<string, string>, number]>([
    ['LRU eviction (AGENTGATE_MAX_CONNS=5)', { AGENTGATE_MAX_CONNS: '5' }, 0],
    ['idle expiry (AGENTGATE_CONN_IDLE_MS=50)', { AGENTGATE_CONN_IDLE_MS: '50' }, 80],
  ])(
    '%s: 400 proxied calls racing rebuilds, goodbyes and evictions get the agent’s answer or a sentinel; none hangs, nothing leaks',
    async (_label, env, pauseMs) => {
      const t = await startTestApp({
        env: {
          AGENTGATE_DIAL_TIMEOUT_MS: String(DIAL_MS),
          AGENTGATE_DB_TIMEOUT_MS: String(DB_MS),
          AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
          ...env,
        },
        maxEventLoopDelayMs: UNSHED_MS,
      });
      // Without keep-alive, every socket this test opens to the app closes with its answer, so
      // the sockets counted after the run are the gate's own.
      const noKeepAlive = new UndiciAgent({ pipelining: 0 });
      const send = async (method: string, path: string, token: string, body?: unknown, signal?: AbortSignal): Promise<Reply> => {
        const res = await request(t.url + path, {
          method: method as 'GET' | 'POST',
          dispatcher: noKeepAlive,
          signal,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.body.text();
        return { status: res.statusCode, headers: new Headers(res.headers as Record<string, string>), text, body: parseBody(text) };
      };
      /** The `agentgate_connections` gauge, read from /metrics as an operator would. */
      const connectionsGauge = async (): Promise<number> => {
        const line = (await send('GET', '/metrics', ENV_ADMIN_TOKEN)).text.split('\n').find((l) => l.startsWith('agentgate_connections '));
        return Number(line?.slice('agentgate_connections '.length));
      };
      const agentCall = async (path: string, a: RegisteredAgent) => {
        const r = await send('POST', path, a.token);
        expect(r.status, `${path}: ${r.text}`).toBe(204);
      };
      try {
        const fleet = await Promise.all(Array.from({ length: N_WORKSPACES }, () => agent()));
        const routes = fleet.map(toolRoute);
        const spaces: Workspace[] = [];
        for (const a of fleet) spaces.push(await createWorkspace(t, [{ address: a.address }]));
        const indexOf = new Map(spaces.map((ws, i) => [ws.id, i]));
        const fakeOf = (ws: Workspace) => fleet[indexOf.get(ws.id)!]!;
        const routeOf = (ws: Workspace) => routes[indexOf.get(ws.id)!]!;
        /** The current agent of each workspace (rebuilds replace it). */
        const current = new Map(spaces.map((ws) => [ws.id, ws.agents[0]!]));
        for (const ws of spaces) await agentCall('/agent/heartbeat', current.get(ws.id)!);
        // One agent said goodbye for good; three flap (goodbye, then a heartbeat); four are
        // rebuilt over and over (same address, a new agent each time); the rest only see the
        // cache's own evictions.
        const gone = spaces[0]!;
        await agentCall('/agent/disconnect', current.get(gone.id)!);
        const flapping = spaces.slice(1, 4);
        const rebuilt = spaces.slice(4, 8);
        const stable = spaces.slice(8);
        const before = await snapshot(t);

        /** What a proxied call ended with: this agent's answer to this very call, or the gate's problem. */
        const ending = (r: Reply, ws: Workspace, path: string): string => {
          if (r.headers.get('x-agentgate-upstream') === 'agent') {
            const own = r.status === 200 && r.text === JSON.stringify({ port: fakeOf(ws).port, url: path });
            return own ? 'agent answer' : `agent ${r.status}, not its answer to this call: ${r.text}`;
          }
          const problem =
            (r.headers.get('content-type') ?? '').startsWith('application/problem+json') &&
            r.body?.status === r.status &&
            typeof r.body?.code === 'string' &&
            typeof r.body?.retryable === 'boolean' &&
            typeof r.body?.hint === 'string';
          return problem ? `${r.status} ${String(r.body.code)}` : `${r.status}, not a sentinel: ${r.text.slice(0, 200)}`;
        };
        const toolCall = async (ws: Workspace, n: number, hold: string): Promise<string> => {
          const path = `/tool/${n}?hold=${hold}`;
          const bound = new AbortController();
          const timer = setTimeout(() => bound.abort(), HANG_MS);
          try {
            return ending(await send('GET', `/workspaces/${ws.id}/conn${path}`, ENV_ADMIN_TOKEN, undefined, bound.signal), ws, path);
          } catch (err) {
            return bound.signal.aborted ? `hung past ${HANG_MS} ms` : `transport error ${String((err as { code?: string }).code ?? err)}`;
          } finally {
            clearTimeout(timer);
          }
        };

        let running = true;
        const churn = { rebuilds: 0, goodbyes: 0 };
        /** Calls held by their agent across a rebuild or a goodbye, answered only after it. */
        const heldAcross = new Set<string>();
        /**
         * Each turn: once an agent of `group` holds a call, runs `evict` on its workspace, then
         * lets the agent answer; the call's lease was taken before the eviction and outlives it.
         */
        const evictUnderCalls = async (group: Workspace[], evict: (ws: Workspace) => Promise<void>): Promise<number> => {
          let turns = 0;
          try {
            while (running) {
              const ws = group.find((w) => routeOf(w).holding() > 0);
              // Polls, without a bound of its own: the waves keep calls coming until `running` ends.
              if (ws === undefined) {
                await sleep(1);
                continue;
              }
              await evict(ws);
              for (const path of routeOf(ws).release()) heldAcross.add(path);
              turns += 1;
            }
          } finally {
            for (const ws of group) routeOf(ws).release();
          }
          return turns;
        };
        const rebuilding = evictUnderCalls(rebuilt, async (ws) => {
          const r = await send('POST', `/workspaces/${ws.id}/builds`, ENV_ADMIN_TOKEN, {
            transition: 'start',
            agents: [{ name: 'agent0', address: fakeOf(ws).address }],
          });
          expect(r.status, r.text).toBe(201);
          const fresh = (r.body.agents as RegisteredAgent[])[0]!;
          current.set(ws.id, fresh);
          churn.rebuilds += 1;
          if (churn.rebuilds % 2 === 0) await agentCall('/agent/heartbeat', fresh);
        });
        const flappingAgents = evictUnderCalls(flapping, async (ws) => {
          await agentCall('/agent/disconnect', current.get(ws.id)!);
          await agentCall('/agent/heartbeat', current.get(ws.id)!);
          churn.goodbyes += 1;
        });

        const results: Array<{ ws: Workspace; path: string; ending: string }> = [];
        try {
          for (let w = 0; w < WAVES; w++) {
            const batch = Array.from({ length: PER_WAVE }, (_, j) => {
              const ws = spaces[(w * 7 + j) % spaces.length]!;
              const n = w * PER_WAVE + j;
              const churned = flapping.includes(ws) || rebuilt.includes(ws);
              return { ws, n, hold: churned && n % 5 === 0 ? 'release' : String((n % 5) * 10) };
            });
            const endings = await Promise.all(batch.map(({ ws, n, hold }) => toolCall(ws, n, hold)));
            endings.forEach((e, j) => results.push({ ws: batch[j]!.ws, path: `/tool/${batch[j]!.n}`, ending: e }));
            // Idle expiry needs the connections to sit idle past AGENTGATE_CONN_IDLE_MS.
            if (pauseMs > 0) await sleep(pauseMs);
          }
        } finally {
          running = false;
        }
        await Promise.all([rebuilding, flappingAgents]);

        const seen = (group: Workspace[]) => new Set(results.filter((r) => group.includes(r.ws)).map((r) => r.ending));
        expect(results).toHaveLength(WAVES * PER_WAVE);
        expect(seen(stable)).toEqual(new Set(['agent answer']));
        expect(seen([gone])).toEqual(new Set(['409 AGENT_DISCONNECTED']));
        // A call in flight when its agent said goodbye or was replaced ends with the sentinel
        // (the work in flight ends with its agent, every kind alike), never a transport error.
        for (const e of seen(flapping)) expect(['agent answer', '409 AGENT_DISCONNECTED', '502 AGENT_CONNECTION_LOST']).toContain(e);
        // A call whose agent was replaced during both of its dials is told so (contract §5 step 11).
        for (const e of seen(rebuilt)) expect(['agent answer', '409 WORKSPACE_CHANGED', '502 AGENT_CONNECTION_LOST']).toContain(e);
        // A call held by the agent across a rebuild or goodbye was ended by it, with the sentinel;
        // the calls held across the cache's own evictions (the stable agents') got their answers.
        expect(heldAcross.size).toBeGreaterThan(5);
        expect(new Set(results.filter((r) => heldAcross.has(r.path)).map((r) => r.ending))).toEqual(new Set(['502 AGENT_CONNECTION_LOST']));
        // Every answer that said it came from the agent was the agent's answer to that call.
        const answered = results.filter((r) => r.ending === 'agent answer').length;
        const reached = fleet.reduce((n, a) => n + a.requests.filter((q) => q.url.startsWith('/tool/')).length, 0);
        expect(reached).toBeGreaterThanOrEqual(answered);

        // The evictions were real: agents were dialed again and connections closed.
        expect(churn.rebuilds).toBeGreaterThan(2);
        expect(churn.goodbyes).toBeGreaterThan(2);
        expect(fleet.reduce((n, a) => n + a.healthChecks(), 0)).toBeGreaterThan(N_WORKSPACES);
        expect(fleet.reduce((n, a) => n + a.sockets.closed, 0)).toBeGreaterThan(0);
        expect(await connectionsGauge()).toBeLessThanOrEqual(Number(env.AGENTGATE_MAX_CONNS ?? N_WORKSPACES));
        // Nothing was an internal error, nor a dial failure remembered afterwards.
        expect(parsedLogs(t).filter((l) => l.level >= 50)).toEqual([]);
        expect(parsedLogs(t).filter((l) => l.code === 'AGENT_UNREACHABLE' || l.code === 'AGENT_DIAL_TIMEOUT')).toEqual([]);

        // Once the churn stops, every agent that is up answers.
        for (const ws of flapping) await agentCall('/agent/heartbeat', current.get(ws.id)!);
        const up = [...flapping, ...rebuilt, ...stable];
        const after = await Promise.all(up.map((ws, i) => toolCall(ws, 10_000 + i, '0')));
        expect(new Set(after)).toEqual(new Set(['agent answer']));

        // Every agent says goodbye: the gate closes every connection it holds, and the process
        // is back to the sockets and handles it had before the run.
        for (const ws of up) await agentCall('/agent/disconnect', current.get(ws.id)!);
        await eventually(async () => (await connectionsGauge()) === 0, 5_000, 'every cached connection closed');
        await eventually(() => fleet.every((a) => a.sockets.closed === a.sockets.opened), 5_000, "every agent's sockets closed");
        await expectNoLeak(t, before);
      } finally {
        await noKeepAlive.close();
        await t.close();
      }
    },
    60_000,
  );
});

describe('PostgreSQL unreachable (contract §5 step 9)', () => {
  const DB_TIMEOUT_MS = 300;
  let env: AppBehindProxy;
  let proxy: FaultProxy;
  let t: TestApp;
  let rows: Rows;

  beforeAll(async () => {
    env = await startAppBehindFaultProxy({ AGENTGATE_DB_TIMEOUT_MS: String(DB_TIMEOUT_MS), AGENTGATE_DIAL_TIMEOUT_MS: '5000' });
    ({ t, proxy } = env);
    rows = await AgentRows.open(env.database.url);
  });
  afterAll(async () => {
    await rows.close();
    await env.close();
  });

  async function timed(fn: () => Promise<Reply>): Promise<{ r: Reply; ms: number }> {
    const started = performance.now();
    const r = await fn();
    return { r, ms: performance.now() - started };
  }

  it.each(['cut', 'blackhole'] as const)(
    '%s: a cached agent is served degraded, an uncached workspace gets DATABASE_UNAVAILABLE at once, and calls recover',
    async (mode) => {
      const [a, u] = [await agent(), await agent()];
      const ws = await createWorkspace(t, [{ address: a.address }]);
      const uncached = await createWorkspace(t, [{ address: u.address }]);
      const agentId = ws.agents[0]!.id;
      await rows.heartbeat(agentId, 1_000);
      await rows.heartbeat(uncached.agents[0]!.id);
      const first = await conn(t, ws.id);
      expect(first.status).toBe(200);
      expect(first.body.connection.cached).toBe(false);
      await rows.heartbeat(agentId, 500);
      const lastRead = await conn(t, ws.id);
      expect(lastRead.status).toBe(200);
      expect(lastRead.body.connection.cached).toBe(true);
      expect(lastRead.body.agent.lastConnectedAt).not.toBe(first.body.agent.lastConnectedAt);
      // A heartbeat the gate cannot see once the database is unreachable.
      await rows.heartbeat(agentId);
      const logsBefore = t.logs.length;

      proxy.setMode(mode);
      try {
        // (a) The cached connection serves, reporting the last row it read.
        const degraded = await timed(() => conn(t, ws.id));
        expect(degraded.r.status, degraded.r.text).toBe(200);
        expect(degraded.r.headers.get('x-agentgate-degraded')).toBe('database');
        expect(degraded.r.body).toEqual({
          workspaceId: ws.id,
          agent: lastRead.body.agent,
          connection: { cached: true, dialedAt: first.body.connection.dialedAt, dialMs: first.body.connection.dialMs },
        });
        expect(degraded.ms).toBeLessThan(3 * DB_TIMEOUT_MS + 600);
        // A proxied tool call is served the same way, and says so too.
        const proxiedCall = await t.call('GET', `/workspaces/${ws.id}/conn/tool`, { token: ENV_ADMIN_TOKEN });
        expect(proxiedCall.status).toBe(404); // the fake agent's own answer, passed through
        expect(proxiedCall.headers.get('x-agentgate-upstream')).toBe('agent');
        expect(proxiedCall.headers.get('x-agentgate-degraded')).toBe('database');
        const warnings = parsedLogs(t)
          .slice(logsBefore)
          .filter((l) => l.level === 40 && l.agentId === agentId);
        // contract §5 step 9: a warning with the agent id and the error.
        expect(warnings.length).toBeGreaterThanOrEqual(1);
        expect(typeof warnings[0]!.err).toBe('string');
        expect(a.healthChecks()).toBe(1);

        // (b) Without a cached connection: DATABASE_UNAVAILABLE within the database bound.
        for (const id of [uncached.id, randomUUID()]) {
          const { r, ms } = await timed(() => conn(t, id));
          expect(r.status, r.text).toBe(503);
          expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
          expect(r.body).toMatchObject({ code: 'DATABASE_UNAVAILABLE', retryable: true });
          expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
          expect(Number(r.headers.get('retry-after'))).toBeLessThanOrEqual(5);
          expect(ms).toBeLessThan(3 * DB_TIMEOUT_MS + 600);
        }
        expect(u.requests).toEqual([]);
      } finally {
        proxy.setMode('pass');
      }

      // (c) Recovery needs nothing but the database coming back.
      await eventually(
        async () => {
          const r = await conn(t, ws.id);
          return r.status === 200 && r.headers.get('x-agentgate-degraded') === null;
        },
        5_000,
        'recovery',
      );
      const back = await conn(t, ws.id);
      expect(back.status).toBe(200);
      expect(back.headers.get('x-agentgate-degraded')).toBeNull();
      expect(back.body.connection.cached).toBe(true);
      // The fresh read sees the heartbeat made during the outage.
      expect(Date.parse(back.body.agent.lastConnectedAt)).toBeGreaterThan(Date.parse(lastRead.body.agent.lastConnectedAt));
      const fresh = await conn(t, uncached.id);
      expect(fresh.status).toBe(200);
      expect(fresh.headers.get('x-agentgate-degraded')).toBeNull();
      expect(fresh.body.connection.cached).toBe(false);
      expect(a.healthChecks()).toBe(1);
      expect(u.healthChecks()).toBe(1);
    },
  );
});

describe('rebuilds during a dial (contract §5 step 11)', () => {
  let t: TestApp;
  let rows: Rows;
  beforeAll(async () => {
    t = await startTestApp({ env: { AGENTGATE_DIAL_TIMEOUT_MS: '5000' } });
    rows = await AgentRows.open(t.database.url);
  });
  afterAll(async () => {
    await rows.close();
    await t.close();
  });

  it('a rebuild while dialing: the call answers for the new agent and closes the old pool', async () => {
    const [a, b] = [await agent(), await agent()];
    const slowA = holdHealth(a);
    const ws = await createWorkspace(t, [{ name: 'main', address: a.address }]);
    const oldId = ws.agents[0]!.id;
    await rows.heartbeat(oldId);

    const pending = conn(t, ws.id);
    await slowA.arrived();
    const [fresh] = await startBuild(t, ws.id, [{ name: 'main', address: b.address }]);
    await rows.heartbeat(fresh!.id);
    slowA.release();

    const r = await pending;
    expect(r.status, r.text).toBe(200);
    expect(r.body).toMatchObject({ workspaceId: ws.id, agent: { id: fresh!.id, name: 'main', status: 'connected' }, connection: { cached: false } });
    await a.sockets.waitClosed(1);
    expect(a.healthChecks()).toBe(1);
    expect(b.healthChecks()).toBe(1);
    expect(b.sockets.closed).toBe(0);
    expect(t.gate.connections.has(oldId)).toBe(false);
    expect(t.gate.connections.has(fresh!.id)).toBe(true);
  });

  it("a build's own notice, arriving after its agent was dialed, does not close that connection", async () => {
    const [a, next] = [await agent(), await agent()];
    const ws = await createWorkspace(t, []);
    const build = await t.call('POST', `/workspaces/${ws.id}/builds`, {
      token: ENV_ADMIN_TOKEN,
      body: { transition: 'start', agents: [{ name: 'main', address: a.address }] },
    });
    expect(build.status).toBe(201);
    const agentId: string = build.body.agents[0].id;
    await rows.heartbeat(agentId);
    expect((await conn(t, ws.id)).status).toBe(200);

    // The NOTIFY echo of this very build (late, or from another replica) spares its agent.
    t.gate.handleEvent({ kind: 'build_created', workspaceId: ws.id, buildId: build.body.build.id });
    expect(t.gate.connections.has(agentId)).toBe(true);
    // Proves a negative: the socket is not closed a moment later either.
    await sleep(50);
    expect(a.sockets.closed).toBe(0);
    expect((await conn(t, ws.id)).body.connection.cached).toBe(true);

    // A newer build replaces it.
    await startBuild(t, ws.id, [{ name: 'main', address: next.address }]);
    expect(t.gate.connections.has(agentId)).toBe(false);
    await allClosed(a);
    expect(a.healthChecks()).toBe(1);
  });

  it('the agent replaced during both dials: WORKSPACE_CHANGED, retryable, both pools closed', async () => {
    const [a, b, c] = [await agent(), await agent(), await agent()];
    const [slowA, slowB] = [holdHealth(a), holdHealth(b)];
    const ws = await createWorkspace(t, [{ name: 'main', address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id);

    const pending = conn(t, ws.id);
    await slowA.arrived();
    const [second] = await startBuild(t, ws.id, [{ name: 'main', address: b.address }]);
    await rows.heartbeat(second!.id);
    slowA.release();
    await slowB.arrived();
    const [third] = await startBuild(t, ws.id, [{ name: 'main', address: c.address }]);
    await rows.heartbeat(third!.id);
    slowB.release();

    const r = await pending;
    expect(r.status, r.text).toBe(409);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(r.body).toMatchObject({ code: 'WORKSPACE_CHANGED', retryable: true, workspaceId: ws.id });
    expect(typeof r.body.hint).toBe('string');
    await a.sockets.waitClosed(1);
    await b.sockets.waitClosed(1);
    expect([a.healthChecks(), b.healthChecks()]).toEqual([1, 1]);
    expect(c.requests).toEqual([]);
    expect(t.gate.connections.has(ws.agents[0]!.id) || t.gate.connections.has(second!.id)).toBe(false);

    // Retrying, as the sentinel says, reaches the current agent.
    const retry = await conn(t, ws.id);
    expect(retry.status).toBe(200);
    expect(retry.body.agent.id).toBe(third!.id);
    expect(c.healthChecks()).toBe(1);
  });
});

describe('two replicas on one database (contract §5 step 13)', () => {
  let database: TestDatabase;
  let one: TestApp;
  let two: TestApp;
  let rows: Rows;
  beforeAll(async () => {
    database = await createTestDatabase();
    one = await startTestApp({ database });
    two = await startTestApp({ database });
    rows = await AgentRows.open(database.url);
  });
  afterAll(async () => {
    await rows.close();
    await one.close();
    await two.close();
    await database.drop();
  });

  /** A workspace whose agent both replicas hold a cached connection to; returns replica two's. */
  async function cachedOnBoth(): Promise<{ a: FakeAgent; ws: Workspace; connTwo: HttpConnection }> {
    const a = await agent();
    const ws = await createWorkspace(one, [{ address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    expect((await conn(one, ws.id)).status).toBe(200);
    expect((await conn(two, ws.id)).status).toBe(200);
    expect(a.healthChecks()).toBe(2);
    expect(a.sockets).toMatchObject({ opened: 2, closed: 0 });
    const connTwo = two.gate.connections.peek(ws.agents[0]!.id) as HttpConnection | undefined;
    expect(connTwo).toBeDefined();
    expect(connTwo).not.toBe(one.gate.connections.peek(ws.agents[0]!.id));
    return { a, ws, connTwo: connTwo! };
  }

  /** Replica two closes its pool by itself: no call reaches it. */
  async function twoClosesItsPool(a: FakeAgent, ws: Workspace, connTwo: HttpConnection): Promise<void> {
    await eventually(() => connTwo.closed, 2_000, "replica two closing its pool");
    await a.sockets.waitClosed(2, 2_000);
    expect(two.gate.connections.has(ws.agents[0]!.id)).toBe(false);
    expect(one.gate.connections.has(ws.agents[0]!.id)).toBe(false);
  }

  it('a goodbye through replica one closes replica two’s connection', async () => {
    const { a, ws, connTwo } = await cachedOnBoth();
    const twoLogsBefore = two.logs.length;
    const r = await one.call('POST', '/agent/disconnect', { token: ws.agents[0]!.token });
    expect(r.status).toBe(204);
    await twoClosesItsPool(a, ws, connTwo);
    const twoLogs = parseLines(two.logs.slice(twoLogsBefore));
    expect(twoLogs.some((l) => l.req !== undefined)).toBe(false);
  });

  it('a new build through replica one closes replica two’s connection to the replaced agent', async () => {
    const { a, ws, connTwo } = await cachedOnBoth();
    const next = await agent();
    await startBuild(one, ws.id, [{ address: next.address }]);
    await twoClosesItsPool(a, ws, connTwo);
    expect(next.requests).toEqual([]);
  });

  it('deleting the workspace through replica one closes replica two’s connection', async () => {
    const { a, ws, connTwo } = await cachedOnBoth();
    const r = await one.call('DELETE', `/workspaces/${ws.id}`, { token: ENV_ADMIN_TOKEN });
    expect(r.status).toBeLessThan(300);
    await twoClosesItsPool(a, ws, connTwo);
    expect((await conn(two, ws.id)).body.code).toBe('WORKSPACE_NOT_FOUND');
  });
});

describe('metrics (contract §5, section 8)', () => {
  let t: TestApp;
  let rows: Rows;
  beforeAll(async () => {
    t = await startTestApp();
    rows = await AgentRows.open(t.database.url);
  });
  afterAll(async () => {
    await rows.close();
    await t.close();
  });

  const scrape = async (): Promise<string> => {
    const r = await t.call('GET', '/metrics');
    expect(r.status).toBe(200);
    return r.text;
  };
  /** The value of one sample, e.g. `agentgate_conn_total{code="ok"}`; undefined when absent. */
  const sample = (text: string, series: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
  /** The sum of a metric's samples over every label set. */
  const sum = (text: string, name: string): number =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);

  it('counts decisions, dials, cached connections and queries; a cached call costs exactly one query', async () => {
    const [a, b] = [await agent(), await agent()];
    const wsA = await createWorkspace(t, [{ address: a.address }]);
    const wsB = await createWorkspace(t, [{ address: b.address }]);
    await rows.heartbeat(wsA.agents[0]!.id);
    await rows.heartbeat(wsB.agents[0]!.id);
    expect((await conn(t, wsA.id)).status).toBe(200);
    expect((await conn(t, wsA.id)).body.connection.cached).toBe(true);
    expect((await conn(t, wsB.id)).status).toBe(200);
    expect((await conn(t, randomUUID())).body.code).toBe('WORKSPACE_NOT_FOUND');

    const text = await scrape();
    expect(sample(text, 'agentgate_conn_total{code="ok"}')).toBe(3);
    expect(sample(text, 'agentgate_conn_total{code="WORKSPACE_NOT_FOUND"}')).toBe(1);
    expect(sample(text, 'agentgate_dial_seconds_count{result="ok"}')).toBe(2);
    expect(sample(text, 'agentgate_connections')).toBe(2);
    expect(t.gate.connections.size).toBe(2);
    expect(sample(text, 'agentgate_db_query_seconds_count{ok="true"}')).toBeGreaterThan(0);
    expect(text).toMatch(/^# TYPE agentgate_db_query_seconds histogram$/m);

    // One cached call, with the token cache out of the way (the env admin token needs no query).
    const before = sum(await scrape(), 'agentgate_db_query_seconds_count');
    const cached = await conn(t, wsB.id);
    expect(cached.status).toBe(200);
    expect(cached.body.connection.cached).toBe(true);
    const after = sum(await scrape(), 'agentgate_db_query_seconds_count');
    expect(after - before).toBe(1);

    // The gauge follows evictions.
    t.gate.handleEvent({ kind: 'agent_disconnected', workspaceId: wsA.id, agentId: wsA.agents[0]!.id });
    expect(sample(await scrape(), 'agentgate_connections')).toBe(1);
    await a.sockets.waitClosed(1);
  });
});
