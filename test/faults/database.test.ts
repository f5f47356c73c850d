// PostgreSQL faults under the gate (contract §5 step 9): cut, silent, slow, reset mid-query. Every
// call answers within the bounds (a degraded 200 on a cached connection, or
// DATABASE_UNAVAILABLE), the process stays up, and it recovers by itself.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startAppBehindFaultProxy, type AppBehindProxy, type Reply, type TestApp } from '../support/app.js';
import { startAgent, type FakeAgent } from '../support/agents.js';
import { AgentRows, conn, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { callsWithoutKeepAlive, eventually, UNSHED_MS, outcome, timed, WorstCases, type Timed } from './support.js';
import { expectNoLeak, poolThroughProxy, snapshot } from '../support/leaks.js';

const DB_TIMEOUT_MS = 800;
const DIAL_TIMEOUT_MS = 500;
// contract §5 step 9: no call waits longer than the dial bound plus twice the database bound.
const CONN_BOUND_MS = DIAL_TIMEOUT_MS + 2 * DB_TIMEOUT_MS;
// Scheduling slack on a loaded 2-core machine; the bound itself is what the gate enforces.
const SLACK_MS = 400;
// After a restore: the pool's connections opened into the outage time out (a few database
// bounds, at least 2 s), then new ones serve.
const RECOVERY_MS = 5_000;

let env: AppBehindProxy;
let t: TestApp;
let proxy: FaultProxy;
let rows: AgentRows & { close(): Promise<void> };
let agent: FakeAgent;
let cachedWs: Workspace;
let uncachedWs: Workspace;
const table = new WorstCases();

beforeAll(async () => {
  callsWithoutKeepAlive();
  env = await startAppBehindFaultProxy({
    AGENTGATE_DB_TIMEOUT_MS: String(DB_TIMEOUT_MS),
    AGENTGATE_DIAL_TIMEOUT_MS: String(DIAL_TIMEOUT_MS),
  }, { maxEventLoopDelayMs: UNSHED_MS });
  ({ t, proxy } = env);
  poolThroughProxy(t, proxy);
  rows = await AgentRows.open(env.database.url);
  agent = await startAgent();
  const other = await startAgent();
  cachedWs = await createWorkspace(t, [{ address: agent.address }]);
  uncachedWs = await createWorkspace(t, [{ address: other.address }]);
  await rows.heartbeat(cachedWs.agents[0]!.id);
  await rows.heartbeat(uncachedWs.agents[0]!.id);
  expect((await conn(t, cachedWs.id)).status).toBe(200);
});

afterAll(async () => {
  table.print('PostgreSQL faults: worst-case waits');
  await rows?.close();
  await agent?.close();
  await env?.close();
});

/** Calls that start together: conn on a cached workspace, conn on an uncached one, a proxied call. */
function calls(): Array<Promise<Timed<Reply>>> {
  const out: Array<Promise<Timed<Reply>>> = [];
  for (let i = 0; i < 5; i += 1) {
    out.push(timed(() => conn(t, cachedWs.id)));
    out.push(timed(() => conn(t, uncachedWs.id)));
    out.push(timed(() => t.call('GET', `/workspaces/${cachedWs.id}/conn/tool`, { token: ENV_ADMIN_TOKEN })));
  }
  return out;
}

/** Degraded on the cached workspace, DATABASE_UNAVAILABLE on the other: never anything else. */
function expectOutageAnswers(answers: Array<Timed<Reply>>): void {
  const seen = new Set(answers.map(({ r }) => outcome(r)));
  for (const { r } of answers) {
    if (r.status === 503) {
      expect(r.body).toMatchObject({ code: 'DATABASE_UNAVAILABLE', retryable: true });
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    } else {
      // 200 from conn, or the fake agent's own 404 to the proxied tool call, both degraded.
      expect(['ok', 'agent 404'], outcome(r)).toContain(outcome(r));
      expect(r.headers.get('x-agentgate-degraded')).toBe('database');
    }
  }
  // The uncached workspace can only be refused; the cached one is served.
  expect(seen).toContain('503 DATABASE_UNAVAILABLE');
  expect(seen).toContain('ok');
}

/** The same calls with the database healthy: pool and client sockets at their steady state. */
async function warmUp(): Promise<Record<string, number>> {
  await Promise.all(calls());
  t.gate.handleEvent({ kind: 'agent_disconnected', workspaceId: uncachedWs.id, agentId: uncachedWs.agents[0]!.id });
  return snapshot(t);
}

/** The batch of calls() made while the proxy is in `mode`; it passes again afterwards. */
async function callsUnder(...fault: Parameters<FaultProxy['setMode']>): Promise<Array<Timed<Reply>>> {
  proxy.setMode(...fault);
  try {
    return await Promise.all(calls());
  } finally {
    proxy.setMode('pass');
  }
}

async function expectRecovered(): Promise<void> {
  await eventually(
    async () => {
      const [a, b] = await Promise.all([conn(t, cachedWs.id), conn(t, uncachedWs.id)]);
      return a.status === 200 && b.status === 200 && a.headers.get('x-agentgate-degraded') === null;
    },
    RECOVERY_MS,
    'recovery once the database is back',
  );
}

describe('PostgreSQL faults', () => {
  it('a server slower to accept a connection than the query bound: the pool refills, calls are served', async () => {
    // A query bound of 300 ms, connections that take 400 ms to open.
    const slow = await startAppBehindFaultProxy({ AGENTGATE_DB_TIMEOUT_MS: '300' }, { maxEventLoopDelayMs: UNSHED_MS });
    try {
      slow.proxy.setMode('slow-accept', { latencyMs: 400 });
      slow.proxy.resetInFlight(); // the pool loses its connections and must open new ones
      const answers: Array<Timed<Reply>> = [];
      const started = Date.now();
      while (Date.now() - started < 3_000) {
        answers.push(await timed(() => slow.t.call('GET', `/workspaces/${cachedWs.id}`, { token: ENV_ADMIN_TOKEN })));
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const { r } of answers) expect(['404 WORKSPACE_NOT_FOUND', '503 DATABASE_UNAVAILABLE'], outcome(r)).toContain(outcome(r));
      // The first calls may find no connection yet; once one has opened, it serves.
      const served = answers.filter(({ r }) => r.status === 404).length;
      expect(served, answers.map(({ r }) => r.status).join(' ')).toBeGreaterThan(answers.length / 2);
      table.record('server slow to accept (400 ms, bound 300 ms)', answers, 300 + SLACK_MS);
    } finally {
      await slow.close();
    }
  });

  it.each([
    ['cut (connections reset, new ones refused)', 'cut'],
    ['silent (a black-holed network)', 'blackhole'],
  ] as const)('%s: every call answers within the bound, and it recovers by itself once restored', async (name, mode) => {
    const before = await warmUp();
    const answers = await callsUnder(mode);
    expectOutageAnswers(answers);
    table.record(`database ${name}`, answers, CONN_BOUND_MS + SLACK_MS);
    const restored = await timed(expectRecovered);
    table.record(`database ${name}: recovery after restore`, [{ r: { status: 200, headers: new Headers(), text: '', body: undefined }, ms: restored.ms }], RECOVERY_MS);
    await Promise.all(calls());
    await expectNoLeak(t, before);
  });

  it('slow (every packet 100 ms late, under the bound): calls are served (fresh, or degraded when a new connection is slower than the bound), all within the bound', async () => {
    const before = await warmUp();
    const answers = await callsUnder('latency', { latencyMs: 100 });
    // A call that waits for a new pool connection (several round trips, each 200 ms) may miss
    // its bound and be served degraded; the others are served fresh.
    const fresh = answers.filter(({ r }) => r.status < 500 && r.headers.get('x-agentgate-degraded') === null);
    for (const { r } of answers) expect(['ok', 'agent 404', '503 DATABASE_UNAVAILABLE'], outcome(r)).toContain(outcome(r));
    expect(fresh.length, answers.map(({ r }) => outcome(r)).join(', ')).toBeGreaterThan(0);
    table.record('database slow (100 ms per packet)', answers, CONN_BOUND_MS + SLACK_MS);
    await Promise.all(calls());
    await expectNoLeak(t, before);
  });

  it('slower than the bound (every packet a bound late): degraded or DATABASE_UNAVAILABLE within the bound, then recovery', async () => {
    const before = await warmUp();
    const answers = await callsUnder('latency', { latencyMs: DB_TIMEOUT_MS });
    expectOutageAnswers(answers);
    table.record('database slower than its bound', answers, CONN_BOUND_MS + SLACK_MS);
    await expectRecovered();
    await Promise.all(calls());
    await expectNoLeak(t, before);
  });

  it('reset while queries are in flight (a failover): every call answers, the process stays up, and it recovers', async () => {
    const before = await warmUp();
    proxy.setMode('blackhole');
    // Queries are now waiting on a silent server; the failover then resets their connections.
    const started = calls();
    // The reset lands halfway through the queries' bound, as a failover mid-query would.
    await new Promise((r) => setTimeout(r, DB_TIMEOUT_MS / 2));
    proxy.resetInFlight();
    const answers = await Promise.all(started);
    proxy.setMode('pass');
    expectOutageAnswers(answers);
    table.record('reset mid-query (blackhole, then reset)', answers, CONN_BOUND_MS + SLACK_MS);
    await expectRecovered();
    await Promise.all(calls());
    await expectNoLeak(t, before);
  });
});

describe('a fresh read that contradicts the last snapshot', () => {
  it('a stop build written straight to the tables (no notification) ends the cached connection: a later outage answers DATABASE_UNAVAILABLE, never a degraded 200', async () => {
    const a = await startAgent();
    try {
      const ws = await createWorkspace(t, [{ address: a.address }]);
      const agentId = ws.agents[0]!.id;
      await rows.heartbeat(agentId);
      expect((await conn(t, ws.id)).status).toBe(200);
      // Another control plane stops the workspace behind the gate's back.
      const direct = new pg.Client({ connectionString: env.database.url });
      await direct.connect();
      await direct.query(
        `insert into workspace_builds (id, workspace_id, build_number, transition)
         select gen_random_uuid(), $1, max(build_number) + 1, 'stop' from workspace_builds where workspace_id = $1`,
        [ws.id],
      );
      await direct.end();
      const stopped = await conn(t, ws.id);
      expect(stopped.status, stopped.text).toBe(409);
      expect(stopped.body.code).toBe('WORKSPACE_HAS_NO_AGENT');
      expect(t.gate.connections.peek(agentId)).toBeUndefined();
      proxy.setMode('cut');
      try {
        const during = await conn(t, ws.id);
        expect(during.status, during.text).toBe(503);
        expect(during.body.code).toBe('DATABASE_UNAVAILABLE');
        const proxiedCall = await t.call('GET', `/workspaces/${ws.id}/conn/tool`, { token: ENV_ADMIN_TOKEN });
        expect(proxiedCall.status, proxiedCall.text).toBe(503);
        expect(a.requests.filter((r) => r.url.endsWith('/tool'))).toEqual([]);
      } finally {
        proxy.setMode('pass');
      }
    } finally {
      await a.close();
    }
  });
});
