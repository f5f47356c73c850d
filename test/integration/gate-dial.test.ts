// Dialing agents (contract §5 steps 5-8): the dial bound, failures before it, one shared dial per
// agent, callers leaving without failing the others and never counting as a timeout, and the
// failed-dial memory. Real agents on real sockets; timings are asserted only with wide margins.
import { GateSigningKey } from '../../src/auth/gate-signing-key.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Agent, request } from 'undici';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { agentFixtures, closedPortAddress } from '../support/agents.js';
import { AgentRows, conn, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { eventually } from '../support/eventually.js';
import { HttpConnection } from '../../src/transport/http/connection.js';
import type { AgentTarget } from '../../src/transport/agent-transport.js';
import { dialAgent, dialOutcome } from '../../src/transport/http/dial.js';
import { SharedDials } from '../../src/gate/shared-dials.js';
import { CallerGone, DialAbandoned, DialFailure, DialTimeout, TooManyWaiters, WaitExpired, type DialOutcome } from '../../src/domain/failures.js';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MIN_QUERY_BUDGET_MS } from '../../src/db/bounded-pool.js';

/** Dial bound 300 ms, failures remembered for 2 s. */
let t: TestApp;
/** Dial bound 5 s: long enough that only a caller leaving can end a dial to a black hole. */
let long: TestApp;
/** Dial bound 400 ms, failures remembered for 600 ms. */
let edge: TestApp;
/** The failed-dial memory of `edge` runs on this clock: a test moves it past the backoff. */
const edgeClock = {
  // Not 0: the memory's cache reads a start time of 0 as "no time-to-live".
  ms: 1_000_000,
  now() {
    return this.ms;
  },
};
let rows: AgentRows & { close(): Promise<void> };
const { agent, blackHole } = agentFixtures();
// Calls the tests abandon go through a dispatcher of their own, destroyed before the apps close:
// after an abort, a client may open a connection it never sends a request on, and a server's
// close waits for such a connection (Node counts it as active until its first request ends).
const abandonableClient = new Agent();

beforeAll(async () => {
  t = await startTestApp({ env: { AGENTGATE_DIAL_TIMEOUT_MS: '300', AGENTGATE_DIAL_BACKOFF_MS: '2000' } });
  long = await startTestApp({ database: t.database, env: { AGENTGATE_DIAL_TIMEOUT_MS: '5000', AGENTGATE_DIAL_BACKOFF_MS: '5000' } });
  edge = await startTestApp({ database: t.database, env: { AGENTGATE_DIAL_TIMEOUT_MS: '400', AGENTGATE_DIAL_BACKOFF_MS: '600' }, clock: edgeClock });
  rows = await AgentRows.open(t.database.url);
});
afterAll(async () => {
  await abandonableClient.destroy();
  await rows?.close();
  await edge?.close();
  await long?.close();
  await t?.close();
});

/** A workspace whose one agent at `address` heartbeated just now (status connected). */
async function connectedWorkspace(app: TestApp, address: string): Promise<Workspace> {
  const ws = await createWorkspace(app, [{ address }]);
  await rows.heartbeat(ws.agents[0]!.id);
  return ws;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - started };
}

/** A conn call the test can abandon: resolves to the status, or to 'aborted' when abandoned. */
function abandonableConn(app: TestApp, workspaceId: string, signal: AbortSignal): Promise<number | 'aborted'> {
  return request(`${app.url}/workspaces/${workspaceId}/conn`, {
    dispatcher: abandonableClient,
    method: 'POST',
    headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}` },
    signal,
  }).then(
    async (res) => {
      await res.body.dump();
      return res.statusCode;
    },
    (error: unknown) => {
      if ((error as Error).name === 'AbortError') return 'aborted' as const;
      throw error;
    },
  );
}

async function connTotal(app: TestApp, code: string): Promise<number> {
  const { values } = await app.metrics.connTotal.get();
  return values.find((v) => v.labels.code === code)?.value ?? 0;
}

async function dials(app: TestApp, result: string): Promise<number> {
  const { values } = await app.metrics.dialSeconds.get();
  return values.find((v) => v.metricName === 'agentgate_dial_seconds_count' && v.labels.result === result)?.value ?? 0;
}

async function counts(app: TestApp) {
  return {
    timeouts: await connTotal(app, 'AGENT_DIAL_TIMEOUT'),
    clientClosed: await connTotal(app, 'client_closed'),
    dialTimeouts: await dials(app, 'timeout'),
    dialsCancelled: await dials(app, 'client_closed'),
  };
}

/** The app's log lines about one workspace, parsed. */
function logsOf(app: TestApp, workspaceId: string): Array<Record<string, unknown>> {
  return app.logs.filter((line) => line.includes(workspaceId)).map((line) => JSON.parse(line) as Record<string, unknown>);
}

function expectSentinel(r: { status: number; headers: Headers; body: Record<string, unknown> }, status: number, code: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ code, status, retryable: true });
  expect(typeof r.body.hint).toBe('string');
  // Weak signals: the agent may answer next time; never advise a restart.
  expect(r.body.hint).not.toMatch(/restart|stop/i);
}

describe('the dial bound', () => {
  it('a black-holed agent → AGENT_DIAL_TIMEOUT near the bound, and its socket is closed', async () => {
    const hole = await blackHole();
    const ws = await connectedWorkspace(t, hole.address);
    const before = await counts(t);
    const { value: r, ms } = await timed(() => conn(t, ws.id));
    expectSentinel(r, 504, 'AGENT_DIAL_TIMEOUT');
    expect(r.body).toMatchObject({ workspaceId: ws.id, agentId: ws.agents[0]!.id, agentStatus: 'connected' });
    expect(ms).toBeGreaterThanOrEqual(280);
    expect(ms).toBeLessThan(800);
    await hole.sockets.waitClosed(1, 1_000);
    expect(hole.sockets.opened).toBe(1);
    // Recorded as a timeout in metrics and logs (the negative checks below rely on these).
    const after = await counts(t);
    expect(after.timeouts - before.timeouts).toBe(1);
    expect(after.dialTimeouts - before.dialTimeouts).toBe(1);
    expect(logsOf(t, ws.id).some((l) => l.code === 'AGENT_DIAL_TIMEOUT')).toBe(true);
  });

  it('a health check slower than the bound → AGENT_DIAL_TIMEOUT', async () => {
    const a = await agent({ delayMs: 1_500 });
    const ws = await connectedWorkspace(t, a.address);
    const { value: r, ms } = await timed(() => conn(t, ws.id));
    expectSentinel(r, 504, 'AGENT_DIAL_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(280);
    expect(ms).toBeLessThan(800);
    expect(a.healthChecks()).toBe(1);
    await a.sockets.waitClosed(1, 1_000);
  });
});

describe('failures before the bound', () => {
  it('a refused connection → AGENT_UNREACHABLE at once', async () => {
    const ws = await connectedWorkspace(t, await closedPortAddress());
    const { value: r, ms } = await timed(() => conn(t, ws.id));
    expectSentinel(r, 502, 'AGENT_UNREACHABLE');
    expect(r.body).toMatchObject({ workspaceId: ws.id, agentId: ws.agents[0]!.id, agentStatus: 'connected' });
    expect(ms).toBeLessThan(200);
  });

  it('a health check answering 500 → AGENT_UNREACHABLE', async () => {
    const a = await agent({ status: 500 });
    const ws = await connectedWorkspace(t, a.address);
    const { value: r, ms } = await timed(() => conn(t, ws.id));
    expectSentinel(r, 502, 'AGENT_UNREACHABLE');
    expect(ms).toBeLessThan(200);
    expect(a.healthChecks()).toBe(1);
    await a.sockets.waitClosed(1, 1_000);
  });
});

describe('concurrent calls share one dial', () => {
  it('50 concurrent calls on a cold agent make one health check; every one counts as dialed', async () => {
    // Long enough that all 50 are in before it answers, on a loaded machine too.
    const a = await agent({ delayMs: 1_000 });
    const ws = await connectedWorkspace(long, a.address);
    const replies = await Promise.all(Array.from({ length: 50 }, () => conn(long, ws.id)));
    expect(replies.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect(replies.map((r): unknown => r.body.connection.cached)).toEqual(Array(50).fill(false));
    expect(new Set(replies.map((r): unknown => r.body.connection.dialedAt)).size).toBe(1);
    expect(a.healthChecks()).toBe(1);
    expect(a.sockets.opened).toBe(1);
    const later = await conn(long, ws.id);
    expect(later.status).toBe(200);
    expect(later.body.connection).toMatchObject({ cached: true, dialedAt: replies[0]!.body.connection.dialedAt });
    expect(a.healthChecks()).toBe(1);
  });

  it('the caller that started a dial leaving does not fail the caller still waiting', async () => {
    const a = await agent({ delayMs: 800 });
    const ws = await connectedWorkspace(long, a.address);
    const before = await counts(long);
    const leaver = new AbortController();
    const left = abandonableConn(long, ws.id, leaver.signal);
    await eventually(() => a.healthChecks() === 1);
    const stays = conn(long, ws.id);
    // Once the second call has joined the dial in flight, the first one leaves.
    await eventually(() => long.gate.dialWaiters(ws.agents[0]!.id) === 2);
    leaver.abort();
    expect(await left).toBe('aborted');
    const r = await stays;
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.connection.cached).toBe(false);
    expect(a.healthChecks()).toBe(1);
    expect(a.sockets.closed).toBe(0);
    await eventually(async () => (await connTotal(long, 'client_closed')) - before.clientClosed === 1);
    expect((await counts(long)).dialsCancelled).toBe(before.dialsCancelled);
  });
});

describe('callers leaving', () => {
  it.each([1, 3])('%i caller(s) leaving a black-holed dial cancel it at once, as client_closed, never a timeout', async (n) => {
    const hole = await blackHole();
    const ws = await connectedWorkspace(long, hole.address);
    const before = await counts(long);
    const started = performance.now();
    const callers = Array.from({ length: n }, () => new AbortController());
    const calls = callers.map((c) => abandonableConn(long, ws.id, c.signal));
    await eventually(() => hole.sockets.opened === 1 && long.gate.dialWaiters(ws.agents[0]!.id) === n);
    // All but the last leave: the dial goes on for the one still waiting.
    for (const c of callers.slice(0, -1)) c.abort();
    if (n > 1) {
      await eventually(() => long.gate.dialWaiters(ws.agents[0]!.id) === 1);
      // The dial is still in flight for the last caller: its socket stays open.
      expect(hole.sockets.closed).toBe(0);
    }
    const lastLeft = performance.now();
    callers.at(-1)!.abort();
    await hole.sockets.waitClosed(1, 400);
    const closedAfter = performance.now() - lastLeft;
    expect(closedAfter).toBeLessThan(400);
    expect(performance.now() - started).toBeLessThan(2_500);
    expect(await Promise.all(calls)).toEqual(Array(n).fill('aborted'));
    expect(hole.sockets.opened).toBe(1);

    await eventually(async () => (await connTotal(long, 'client_closed')) - before.clientClosed === n);
    await eventually(async () => (await dials(long, 'client_closed')) - before.dialsCancelled === 1);
    const after = await counts(long);
    expect(after.timeouts).toBe(before.timeouts);
    expect(after.dialTimeouts).toBe(before.dialTimeouts);
    const logs = logsOf(long, ws.id);
    expect(logs.filter((l) => l.code === 'client_closed').length).toBeGreaterThanOrEqual(n + 1);
    expect(logs.some((l) => JSON.stringify(l).includes('AGENT_DIAL_TIMEOUT'))).toBe(false);
  });

  it('a cancelled dial is not remembered: the next call dials', async () => {
    const a = await agent({ hang: true });
    const ws = await connectedWorkspace(long, a.address);
    const before = await counts(long);
    const callers = [new AbortController(), new AbortController()];
    const calls = callers.map((c) => abandonableConn(long, ws.id, c.signal));
    await eventually(() => a.healthChecks() === 1 && long.gate.dialWaiters(ws.agents[0]!.id) === 2);
    const lastLeft = performance.now();
    for (const c of callers) c.abort();
    await a.sockets.waitClosed(1, 400);
    expect(performance.now() - lastLeft).toBeLessThan(400);
    expect(await Promise.all(calls)).toEqual(['aborted', 'aborted']);
    await eventually(async () => (await dials(long, 'client_closed')) - before.dialsCancelled === 1);

    a.setHealth({});
    const r = await conn(long, ws.id);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.connection.cached).toBe(false);
    expect(a.healthChecks()).toBe(2);
    expect(await connTotal(long, 'client_closed')).toBe(before.clientClosed + 2);
    expect((await counts(long)).dialTimeouts).toBe(before.dialTimeouts);
  });

  it('a caller leaving shortly before the bound fires is never counted as a timeout', async () => {
    const hole = await blackHole();
    const ws = await connectedWorkspace(edge, hole.address);
    const before = await counts(edge);
    const started = performance.now();
    const caller = new AbortController();
    const call = abandonableConn(edge, ws.id, caller.signal);
    await sleep(350);
    caller.abort();
    expect(await call).toBe('aborted');
    await hole.sockets.waitClosed(1, 400);
    // Well past the moment the 400 ms bound would have fired.
    await sleep(Math.max(0, 750 - (performance.now() - started)));
    await eventually(async () => (await connTotal(edge, 'client_closed')) - before.clientClosed === 1);
    const after = await counts(edge);
    expect(after.timeouts).toBe(before.timeouts);
    expect(after.dialTimeouts).toBe(before.dialTimeouts);
    expect(after.dialsCancelled - before.dialsCancelled).toBe(1);
    const logs = logsOf(edge, ws.id);
    expect(logs.some((l) => l.code === 'client_closed')).toBe(true);
    expect(logs.some((l) => JSON.stringify(l).includes('AGENT_DIAL_TIMEOUT'))).toBe(false);

    // Not remembered either: the next call dials again (and, still a black hole, times out).
    const { value: r, ms } = await timed(() => conn(edge, ws.id));
    expectSentinel(r, 504, 'AGENT_DIAL_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(380);
    expect(hole.sockets.opened).toBe(2);
  });
});

describe('failed-dial memory', () => {
  it('after AGENT_DIAL_TIMEOUT the next call fails at once with Retry-After, until a heartbeat', async () => {
    const a = await agent({ hang: true });
    const ws = await connectedWorkspace(t, a.address);
    expectSentinel(await conn(t, ws.id), 504, 'AGENT_DIAL_TIMEOUT');
    await a.sockets.waitClosed(1, 1_000);

    const { value: again, ms } = await timed(() => conn(t, ws.id));
    expectSentinel(again, 504, 'AGENT_DIAL_TIMEOUT');
    expect(again.body).toMatchObject({ agentId: ws.agents[0]!.id, agentStatus: 'connected' });
    expect(ms).toBeLessThan(150);
    expect(Number(again.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(again.headers.get('retry-after'))).toBeLessThanOrEqual(2);
    expect(a.healthChecks()).toBe(1);
    expect(a.sockets.opened).toBe(1);

    // A new heartbeat moves last_connected_at: the next call dials again.
    a.setHealth({});
    await rows.heartbeat(ws.agents[0]!.id);
    const r = await conn(t, ws.id);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.connection.cached).toBe(false);
    expect(a.healthChecks()).toBe(2);
  });

  it('after AGENT_UNREACHABLE the next call fails at once with Retry-After, until a heartbeat', async () => {
    const a = await agent({ status: 500 });
    const ws = await connectedWorkspace(t, a.address);
    expectSentinel(await conn(t, ws.id), 502, 'AGENT_UNREACHABLE');
    await a.sockets.waitClosed(1, 1_000);

    const { value: again, ms } = await timed(() => conn(t, ws.id));
    expectSentinel(again, 502, 'AGENT_UNREACHABLE');
    expect(ms).toBeLessThan(150);
    expect(Number(again.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(a.healthChecks()).toBe(1);
    expect(a.sockets.opened).toBe(1);

    // Without a new heartbeat the agent stays failed even though it is healthy now...
    a.setHealth({});
    expectSentinel(await conn(t, ws.id), 502, 'AGENT_UNREACHABLE');
    expect(a.healthChecks()).toBe(1);
    // ...and a heartbeat makes the next call dial.
    await rows.heartbeat(ws.agents[0]!.id);
    const r = await conn(t, ws.id);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(a.healthChecks()).toBe(2);
  });

  it('a refused dial is remembered too', async () => {
    const ws = await connectedWorkspace(t, await closedPortAddress());
    expectSentinel(await conn(t, ws.id), 502, 'AGENT_UNREACHABLE');
    const again = await conn(t, ws.id);
    expectSentinel(again, 502, 'AGENT_UNREACHABLE');
    expect(again.headers.get('retry-after')).not.toBeNull();
    expect(again.body.detail).toMatch(/remembered/);
  });

  it('a remembered failure expires after the backoff', async () => {
    const a = await agent({ status: 503 });
    const ws = await connectedWorkspace(edge, a.address);
    expectSentinel(await conn(edge, ws.id), 502, 'AGENT_UNREACHABLE');
    const remembered = await conn(edge, ws.id);
    expectSentinel(remembered, 502, 'AGENT_UNREACHABLE');
    expect(remembered.headers.get('retry-after')).toBe('1');
    expect(a.healthChecks()).toBe(1);

    a.setHealth({});
    edgeClock.ms += 599;
    expectSentinel(await conn(edge, ws.id), 502, 'AGENT_UNREACHABLE');
    expect(a.healthChecks()).toBe(1);
    edgeClock.ms += 2;
    const r = await conn(edge, ws.id);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.connection.cached).toBe(false);
    expect(a.healthChecks()).toBe(2);
  });
});

describe('dialAgent', () => {
  const target = (address: string): AgentTarget => ({
    agentId: '00000000-0000-4000-8000-000000000001',
    workspaceId: '00000000-0000-4000-8000-000000000002',
    address,
  });
  const signingKey = GateSigningKey.generate();
  const options = (signal: AbortSignal, timeoutMs = 5_000) => ({
    timeoutMs,
    connectTimeoutMs: timeoutMs,
    headersTimeoutMs: 60_000,
    signingKey,
    signal,
  });

  async function failure(dial: Promise<HttpConnection>): Promise<DialFailure> {
    const error = await dial.then(
      async (c) => {
        await c.destroy();
        throw new Error('the dial succeeded');
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DialFailure);
    return error as DialFailure;
  }

  it('cancelled through its signal → cancelled at once, and the socket is closed', async () => {
    const hole = await blackHole();
    const abandon = new AbortController();
    const dial = failure(dialAgent(target(hole.address), options(abandon.signal)));
    await eventually(() => hole.sockets.opened === 1);
    await sleep(20);
    const { value: error, ms } = await timed(async () => {
      abandon.abort(new DialAbandoned('every caller left'));
      return dial;
    });
    expect(error.outcome).toBe('cancelled');
    expect(ms).toBeLessThan(100);
    await hole.sockets.waitClosed(1, 200);
  });

  it('cancelled while still connecting → cancelled', async () => {
    const hole = await blackHole();
    const abandon = new AbortController();
    const dial = failure(dialAgent(target(hole.address), options(abandon.signal)));
    abandon.abort(new DialAbandoned('every caller left'));
    const { value: error, ms } = await timed(() => dial);
    expect(error.outcome).toBe('cancelled');
    expect(ms).toBeLessThan(100);
    await hole.sockets.waitClosed(hole.sockets.opened, 200);
  });

  it('times out → timeout, never cancelled, even when the signal aborts just after the bound fired', async () => {
    const hole = await blackHole();
    const plain = await timed(() => failure(dialAgent(target(hole.address), options(new AbortController().signal, 200))));
    expect(plain.value.outcome).toBe('timeout');
    expect(plain.ms).toBeGreaterThanOrEqual(190);
    expect(plain.ms).toBeLessThan(700);

    const abandon = new AbortController();
    const dial = failure(dialAgent(target(hole.address), options(abandon.signal, 200)));
    // Same due time, created later: this fires right after the dial's own timer.
    setTimeout(() => abandon.abort(new DialAbandoned('every caller left')), 200);
    expect((await dial).outcome).toBe('timeout');
    await hole.sockets.waitClosed(2, 500);
  });

  it('refused, or a non-2xx health check → unreachable', async () => {
    const refused = await timed(async () => failure(dialAgent(target(await closedPortAddress()), options(new AbortController().signal))));
    expect(refused.value.outcome).toBe('unreachable');
    expect(refused.value.message).toMatch(/refused/);
    expect(refused.ms).toBeLessThan(200);

    const a = await agent({ status: 500 });
    const unhealthy = await failure(dialAgent(target(a.address), options(new AbortController().signal)));
    expect(unhealthy.outcome).toBe('unreachable');
    expect(unhealthy.message).toMatch(/500/);
    await a.sockets.waitClosed(1, 500);
  });

  it('a refusal stays unreachable when the caller leaves while the dial cleans up', async () => {
    const abandon = new AbortController();
    // The refusal has been seen; the last waiter leaves while the dial is closing its pool.
    const destroy = Object.getOwnPropertyDescriptor(HttpConnection.prototype, 'destroy')!.value as (this: HttpConnection) => Promise<void>;
    const spy = vi.spyOn(HttpConnection.prototype, 'destroy').mockImplementation(function (this: HttpConnection) {
      abandon.abort(new DialAbandoned('every caller left'));
      return destroy.call(this);
    });
    try {
      const error = await failure(dialAgent(target(await closedPortAddress()), options(abandon.signal)));
      expect(spy).toHaveBeenCalled();
      expect(error.outcome).toBe('unreachable');
    } finally {
      spy.mockRestore();
    }
  });

  it('a healthy agent → a connection on which the health check was made', async () => {
    const a = await agent();
    const c = await dialAgent(target(`${a.address}/base`), options(new AbortController().signal));
    try {
      expect(c.closed).toBe(false);
      expect(c.dialMs).toBeGreaterThan(0);
      expect(a.requests.map((r) => r.url)).toEqual(['/base/health']);
    } finally {
      await c.close();
    }
    await a.sockets.waitClosed(1, 500);
  });

  const reasons: Array<[string, unknown]> = [
    ['undefined', undefined],
    ['a DialTimeout', new DialTimeout('t')],
    ['a DialAbandoned', new DialAbandoned('a')],
    ['a CallerGone', new CallerGone('c')],
    ['a plain Error', new Error('e')],
    ['a DOMException', new DOMException('aborted', 'AbortError')],
    ['a string', 'reason'],
  ];
  it.each(reasons)('dialOutcome with reason %s', (_label, reason) => {
    expect(dialOutcome(false, reason)).toBe('unreachable');
    const expected: DialOutcome = reason instanceof DialTimeout ? 'timeout' : 'cancelled';
    expect(dialOutcome(true, reason)).toBe(expected);
  });
});

describe('SharedDials', () => {
  it('a caller arriving after every waiter left starts a new dial instead of inheriting the cancel', async () => {
    const shared = new SharedDials<string>();
    let started = 0;
    // A dial that takes a moment to settle after its abort, as a real one closing its sockets does.
    const start = (signal: AbortSignal) => {
      const n = ++started;
      return new Promise<string>((resolve, reject) => {
        signal.addEventListener('abort', () => setTimeout(() => reject(new DialFailure('cancelled', 'cancelled')), 20), { once: true });
        setTimeout(() => resolve(`dial ${n}`), 100);
      });
    };
    const first = new AbortController();
    const left = shared.join('agent', first.signal, 5_000, start);
    first.abort();
    await expect(left).rejects.toBeInstanceOf(CallerGone);
    const next = await shared.join('agent', new AbortController().signal, 5_000, start);
    expect(next).toEqual({ value: 'dial 2', joined: false });
    expect(started).toBe(2);
  });

  it('waiters join one dial; one leaving does not reject the others', async () => {
    const shared = new SharedDials<string>();
    let started = 0;
    let aborted = false;
    const start = (signal: AbortSignal) => {
      started += 1;
      signal.addEventListener('abort', () => (aborted = true));
      return sleep(50).then(() => 'ok');
    };
    const leaver = new AbortController();
    const a = shared.join('agent', leaver.signal, 5_000, start);
    const b = shared.join('agent', new AbortController().signal, 5_000, start);
    leaver.abort();
    await expect(a).rejects.toBeInstanceOf(CallerGone);
    expect(await b).toEqual({ value: 'ok', joined: true });
    expect(started).toBe(1);
    expect(aborted).toBe(false);
    expect(shared.inFlight).toBe(0);
  });

  it('a waiter whose own budget runs out stops waiting alone: the dial goes on for the others', async () => {
    const shared = new SharedDials<string>();
    let aborted = false;
    const start = (signal: AbortSignal) => {
      signal.addEventListener('abort', () => (aborted = true));
      return sleep(150).then(() => 'ok');
    };
    const short = shared.join('agent', new AbortController().signal, 30, start);
    const patient = shared.join('agent', new AbortController().signal, 5_000, start);
    await expect(short).rejects.toBeInstanceOf(WaitExpired);
    expect(await patient).toEqual({ value: 'ok', joined: true });
    expect(aborted).toBe(false);
  });
});

describe('SharedDials: a bounded, cheap wait', () => {
  it('refuses at once a caller beyond the most waiters allowed per agent; others and other agents are unaffected', async () => {
    const shared = new SharedDials<string>({ maxWaiters: 3 });
    let started = 0;
    let finish: (value: string) => void = () => undefined;
    const start = () => {
      started += 1;
      return new Promise<string>((resolve) => (finish = resolve));
    };
    const leaver = new AbortController();
    const waiting = [
      shared.join('agent', leaver.signal, 5_000, start),
      shared.join('agent', new AbortController().signal, 5_000, start),
      shared.join('agent', new AbortController().signal, 5_000, start),
    ];
    waiting[0]!.catch(() => undefined);
    expect(shared.waiters('agent')).toBe(3);
    await expect(shared.join('agent', new AbortController().signal, 5_000, start)).rejects.toBeInstanceOf(TooManyWaiters);
    expect(shared.waiters('agent')).toBe(3);
    // Another agent's dial has waiters of its own.
    const elsewhere = shared.join('other', new AbortController().signal, 5_000, () => Promise.resolve('there'));
    expect(await elsewhere).toEqual({ value: 'there', joined: false });
    // One leaving frees a place.
    leaver.abort();
    await expect(waiting[0]).rejects.toBeInstanceOf(CallerGone);
    waiting.push(shared.join('agent', new AbortController().signal, 5_000, start));
    finish('ok');
    for (const w of waiting.slice(1)) expect(await w).toEqual({ value: 'ok', joined: true });
    expect(started).toBe(1);
    expect(shared.waiters('agent')).toBe(0);
  });

  it('keeps each waiter small (heap per waiter, measured loosely)', async () => {
    // why: gc is not exposed to tests by default; the flag can be set at run time.
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const n = 5_000;
    const shared = new SharedDials<string>({ maxWaiters: n });
    let finish: (value: string) => void = () => undefined;
    const dial = new Promise<string>((resolve) => (finish = resolve));
    const signals = Array.from({ length: n }, () => new AbortController().signal);
    gc();
    const before = process.memoryUsage().heapUsed;
    const waiting = signals.map((signal) => shared.join('agent', signal, 60_000, () => dial));
    gc();
    const perWaiter = (process.memoryUsage().heapUsed - before) / n;
    finish('ok');
    await Promise.all(waiting);
    expect(shared.waiters('agent')).toBe(0);
    // A rough ceiling, far above the few hundred bytes a waiter takes, far below the 40 KB each
    // of 2 000 callers cost in all when this was found.
    expect(perWaiter).toBeLessThan(2_048);
  });
});

describe("one caller's budget never leaks into state shared by all callers", () => {
  it('a dial started by a caller with little time left runs with the full bound; the callers who joined get the agent, and nothing is remembered', async () => {
    // Dial bound 5 s, failures remembered for 5 s (app long). The agent answers in 800 ms.
    const a = await agent({ delayMs: 800 });
    const ws = await connectedWorkspace(long, a.address);
    // A call on its second loop: 80 ms of its budget left when it starts the dial.
    const bound = long.config.dialTimeoutMs + 2 * long.config.dbTimeoutMs;
    const hurried = long.gate
      .connect({
        workspaceId: ws.id,
        ownerScope: null,
        signal: new AbortController().signal,
        log: long.app.log,
        startedAt: performance.now() - (bound - 80),
      })
      .then(
        (ok) => {
          ok.lease.release();
          return 'ok';
        },
        (error: { code?: string }) => error.code,
      );
    // Fresh callers join the dial it started.
    await sleep(20);
    const fresh = await Promise.all(Array.from({ length: 8 }, () => conn(long, ws.id)));
    expect(await hurried).toBe('AGENT_DIAL_TIMEOUT');
    for (const r of fresh) {
      expect(r.status, r.text).toBe(200);
      expect(r.body.connection.cached).toBe(false);
    }
    expect(a.healthChecks()).toBe(1);
    // The hurried caller's timeout was its own: the next caller is served, not refused from memory.
    const next = await conn(long, ws.id);
    expect(next.status, next.text).toBe(200);
    expect(next.body.connection.cached).toBe(true);
  });

  it('a query is never sent with less than the minimum budget, so a healthy pooled connection is never cut', async () => {
    const pool = t.handle.pool;
    await pool.queryNamed('budget_probe', 'select 1 as one', [], 1_000);
    const open = pool.pg.totalCount;
    for (const budget of [0, 1, 5, MIN_QUERY_BUDGET_MS - 1]) {
      await expect(pool.queryNamed('budget_probe_sleep', 'select pg_sleep(0.01)', [], budget)).rejects.toMatchObject({
        code: 'AGENTGATE_DB_TIMEOUT',
      });
    }
    expect(pool.pg.totalCount).toBe(open);
    expect(await pool.queryNamed('budget_probe', 'select 1 as one', [], 1_000)).toEqual([{ one: 1 }]);
  });
});

