// Agent faults under the gate and the proxy: an agent that is silent, refuses, resets
// mid-response, answers /health then hangs on tool calls, flaps, or freezes (its process
// stopped, so that new connections hang). Every call answers within its configured bound with
// a documented code, the caller leaving releases everything at once, and nothing leaks.
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, parseBody, startTestApp, type Reply, type TestApp } from '../support/app.js';
import {
  closedPortAddress,
  startAgent,
  startBlackHole,
  startFreezableAgent,
} from '../support/agents.js';
import { AgentRows, conn, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { buildAgentApp } from '../../src/agent/agent-app.js';
import { GateKeyRing } from '../../src/agent/gate-keys.js';
import { createLogger } from '../../src/logger.js';
import type { HttpConnection } from '../../src/transport/http/connection.js';
import { callsWithoutKeepAlive, eventually, UNSHED_MS, outcome, timed, WorstCases, type Timed } from './support.js';
import { expectNoLeak, snapshot } from '../support/leaks.js';

const DB_TIMEOUT_MS = 1_000;
const DIAL_TIMEOUT_MS = 1_500;
const HEADERS_TIMEOUT_MS = 400;
const CONN_BOUND_MS = DIAL_TIMEOUT_MS + 2 * DB_TIMEOUT_MS;
// A proxied call: the gate's bound, then the agent's headers.
const PROXY_BOUND_MS = CONN_BOUND_MS + HEADERS_TIMEOUT_MS;
const SLACK_MS = 400;

let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };
const closers: Array<() => Promise<unknown>> = [];
const table = new WorstCases();

beforeAll(async () => {
  callsWithoutKeepAlive();
  t = await startTestApp({
    env: {
      AGENTGATE_DB_TIMEOUT_MS: String(DB_TIMEOUT_MS),
      AGENTGATE_DIAL_TIMEOUT_MS: String(DIAL_TIMEOUT_MS),
      AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      AGENTGATE_DIAL_BACKOFF_MS: '300',
      AGENTGATE_DISCONNECT_GRACE_MS: '0',
    },
    maxEventLoopDelayMs: UNSHED_MS,
  });
  rows = await AgentRows.open(t.database.url);
});

afterAll(async () => {
  table.print('Agent faults: worst-case waits');
  for (const close of closers.reverse()) await close();
  await rows?.close();
  await t?.close();
});

async function connected(address: string): Promise<Workspace> {
  const ws = await createWorkspace(t, [{ address }]);
  await rows.heartbeat(ws.agents[0]!.id);
  return ws;
}

const proxied = (ws: Workspace, init: { method?: string; signal?: AbortSignal } = {}) =>
  timed(async (): Promise<Reply> => {
    const res = await fetch(`${t.url}/workspaces/${ws.id}/conn/tool`, {
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}` },
      signal: init.signal,
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, body: parseBody(text) };
  });

const problem = (r: Reply, code: string) => {
  expect(r.headers.get('content-type'), outcome(r)).toMatch(/^application\/problem\+json/);
  expect(r.body?.code, r.text).toBe(code);
};

/** The gate's cached connection to a workspace's agent. */
/** The cached connection to the workspace's agent, dialed over HTTP (its sockets are looked at). */
function cachedConnection(ws: Workspace) {
  return t.gate.connections.peek(ws.agents[0]!.id) as HttpConnection | undefined;
}

describe('agent faults', () => {
  it('a silent agent: AGENT_DIAL_TIMEOUT at the dial bound, then remembered at once; its sockets closed', async () => {
    const hole = await startBlackHole();
    closers.push(() => hole.close());
    const ws = await connected(hole.address);
    const before = await snapshot(t);
    const calls = await Promise.all([timed(() => conn(t, ws.id)), proxied(ws), timed(() => conn(t, ws.id))]);
    for (const { r } of calls) problem(r, 'AGENT_DIAL_TIMEOUT');
    table.record('agent silent (accepts, never answers)', calls, CONN_BOUND_MS + SLACK_MS);
    const remembered = await timed(() => conn(t, ws.id));
    problem(remembered.r, 'AGENT_DIAL_TIMEOUT');
    expect(remembered.ms).toBeLessThan(DB_TIMEOUT_MS + SLACK_MS);
    await hole.sockets.waitClosed(hole.sockets.opened);
    await expectNoLeak(t, before);
  });

  it('an agent that refuses connections: AGENT_UNREACHABLE at once', async () => {
    const ws = await connected(await closedPortAddress());
    const before = await snapshot(t);
    const calls = await Promise.all([timed(() => conn(t, ws.id)), proxied(ws)]);
    for (const { r } of calls) problem(r, 'AGENT_UNREACHABLE');
    table.record('agent refuses connections', calls, DB_TIMEOUT_MS + SLACK_MS);
    await expectNoLeak(t, before);
  });

  it('an agent that resets mid-response: the caller sees a broken response, never a clean end; before headers, AGENT_CONNECTION_LOST', async () => {
    const a = await startAgent();
    closers.push(() => a.close());
    let mode: 'mid-body' | 'before-headers' = 'mid-body';
    a.handle = (req, res) => {
      if (!req.url?.endsWith('/tool')) return false;
      if (mode === 'before-headers') {
        req.socket.resetAndDestroy();
        return true;
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => req.socket.resetAndDestroy(), 20);
      return true;
    };
    const ws = await connected(a.address);
    const before = await snapshot(t);
    const midBody = await timed(async () => {
      const res = await fetch(`${t.url}/workspaces/${ws.id}/conn/tool`, { headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}` } });
      expect(res.status).toBe(200);
      await expect(res.text()).rejects.toThrow();
      return 'broken';
    });
    expect(midBody.r).toBe('broken');
    mode = 'before-headers';
    const lost = await proxied(ws);
    problem(lost.r, 'AGENT_CONNECTION_LOST');
    table.record('agent resets before its response', [lost], HEADERS_TIMEOUT_MS + SLACK_MS);
    expect(midBody.ms).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS);
    await expectNoLeak(t, before);
  });

  it('an agent that answers /health, then hangs on tool calls: AGENT_RESPONSE_TIMEOUT at the headers bound', async () => {
    const a = await startAgent();
    closers.push(() => a.close());
    a.handle = (req) => req.url?.endsWith('/tool') === true; // never answered
    const ws = await connected(a.address);
    expect((await conn(t, ws.id)).status).toBe(200);
    const before = await snapshot(t);
    const calls = await Promise.all([proxied(ws), proxied(ws, { method: 'POST' }), proxied(ws)]);
    for (const { r } of calls) problem(r, 'AGENT_RESPONSE_TIMEOUT');
    table.record('agent hangs on tool calls', calls, HEADERS_TIMEOUT_MS + SLACK_MS);
    // The health check still passes: the connection stays, and conn says so.
    expect((await conn(t, ws.id)).status).toBe(200);
    await expectNoLeak(t, before, 4);
  });

  it('an agent that flaps every 300 ms: every answer is documented and bounded, and calls recover once it stays up', async () => {
    const a = await startAgent();
    closers.push(() => a.close());
    const ws = await connected(a.address);
    const port = new URL(a.address).port;
    let flapper: http.Server | undefined;
    const up = () =>
      new Promise<void>((resolve) => {
        flapper = http.createServer((req, res) => {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
          req.resume();
        });
        flapper.on('error', () => resolve()); // the port may be briefly taken; the next flip retries
        flapper.listen(Number(port), '127.0.0.1', () => resolve());
      });
    const down = () =>
      new Promise<void>((resolve) => {
        if (!flapper) return resolve();
        flapper.closeAllConnections();
        flapper.close(() => resolve());
        flapper = undefined;
      });
    await a.close(); // the port is the flapper's from now on
    const before = await snapshot(t);
    const answers: Array<Timed<Reply>> = [];
    let stop = false;
    const flapping = (async () => {
      for (let i = 0; i < 8 && !stop; i += 1) {
        await (i % 2 === 0 ? up() : down());
        // Paces the flapping: the agent stays up (or down) for a while each time.
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    const callers = Array.from({ length: 3 }, async () => {
      while (!stop) {
        answers.push(await (answers.length % 2 ? proxied(ws) : timed(() => conn(t, ws.id))));
        await rows.heartbeat(ws.agents[0]!.id);
      }
    });
    await flapping;
    stop = true;
    await Promise.all(callers);
    await up();
    closers.push(down);
    const allowed = ['ok', 'agent 200', '502 AGENT_UNREACHABLE', '502 AGENT_CONNECTION_LOST', '504 AGENT_DIAL_TIMEOUT'];
    for (const { r } of answers) expect(allowed, outcome(r)).toContain(outcome(r));
    expect(answers.length).toBeGreaterThan(5);
    table.record('agent flaps every 300 ms', answers, PROXY_BOUND_MS + SLACK_MS);
    await eventually(async () => (await conn(t, ws.id)).status === 200, 3_000, 'a call served once the agent stays up');
    await down();
    await expectNoLeak(t, before, 4);
  });

  describe('an agent frozen after its sockets closed (a new socket never connects)', () => {
    async function frozenWorkspace() {
      const agent = await startFreezableAgent();
      closers.push(() => agent.close());
      const ws = await connected(agent.address);
      expect((await conn(t, ws.id)).status).toBe(200);
      const cached = cachedConnection(ws);
      expect(cached).toBeDefined();
      // The agent closes its idle sockets after 200 ms; the cached connection then has none.
      await eventually(() => cached!.pool.stats.connected === 0, 3_000, 'the idle socket closed by the agent');
      await agent.freeze();
      return { agent, ws, cached: cached! };
    }

    it('a proxied call gets AGENT_RESPONSE_TIMEOUT at the headers bound, connect included, and the connecting socket goes', async () => {
      const { agent, ws, cached } = await frozenWorkspace();
      const before = await snapshot(t);
      const calls = await Promise.all([proxied(ws), proxied(ws, { method: 'POST' })]);
      for (const { r } of calls) {
        problem(r, 'AGENT_RESPONSE_TIMEOUT');
        expect(r.body.detail).toContain(`${HEADERS_TIMEOUT_MS} ms`);
      }
      // Well under the dial bound, which used to be the only bound on connecting.
      table.record('agent frozen, proxied call (new socket)', calls, HEADERS_TIMEOUT_MS + SLACK_MS);
      expect(cached.connectingSockets).toBe(0);
      agent.thaw();
      await expectNoLeak(t, before, 4);
    });

    it('the caller leaving while a new socket connects releases everything within milliseconds', async () => {
      const { agent, ws, cached } = await frozenWorkspace();
      const logsBefore = t.logs.length;
      const controller = new AbortController();
      const call = proxied(ws, { signal: controller.signal }).catch((error: unknown) => error);
      await eventually(() => cached.connectingSockets > 0, 2_000, 'a socket connecting to the frozen agent');
      const left = performance.now();
      controller.abort();
      await call;
      await eventually(() => cached.connectingSockets === 0, 200, 'the connecting socket given up');
      await eventually(
        () => t.logs.slice(logsBefore).some((line) => line.includes('"code":"client_closed"')),
        200,
        'the call answered as client_closed',
      );
      expect(performance.now() - left).toBeLessThan(SLACK_MS);
      agent.thaw();
    });
  });

  it('a cached connection keeps its socket across a pause longer than undici’s default keep-alive (4 s)', async () => {
    const created = await createWorkspace(t, [{ address: 'http://127.0.0.1:1' }]);
    // The reference agent, in-process, on the token of the build that registered it.
    const app = await buildAgentApp({ keys: new GateKeyRing({ gate: t.url, token: created.agents[0]!.token, logger: createLogger('silent') }), root: process.cwd(), logger: createLogger('silent') });
    await app.listen({ host: '127.0.0.1', port: 0 });
    closers.push(() => app.close());
    const sockets = new Set<net.Socket>();
    app.server.on('connection', (s: net.Socket) => sockets.add(s));
    const address = `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`;
    const build = await t.call('POST', `/workspaces/${created.id}/builds`, {
      token: ENV_ADMIN_TOKEN,
      body: { transition: 'start', agents: [{ name: 'main', address }] },
    });
    expect(build.status).toBe(201);
    const agentApp = await buildAgentApp({
      keys: new GateKeyRing({ gate: t.url, token: build.body.agents[0].token, logger: createLogger('silent') }),
      root: process.cwd(),
      logger: createLogger('silent'),
    });
    await app.close();
    await agentApp.listen({ host: '127.0.0.1', port: Number(new URL(address).port) });
    closers.push(() => agentApp.close());
    sockets.clear();
    agentApp.server.on('connection', (s: net.Socket) => sockets.add(s));
    await rows.heartbeat(build.body.agents[0].id);
    const ws = { id: created.id, ownerId: created.ownerId, agents: build.body.agents };
    expect((await conn(t, ws.id)).status).toBe(200);
    expect(sockets.size).toBe(1);
    // Idle past undici's default keep-alive (4 s): the socket must still be the dial's.
    await new Promise((r) => setTimeout(r, 4_500));
    const health = await t.call('GET', `/workspaces/${ws.id}/conn/health`, { token: ENV_ADMIN_TOKEN });
    expect(health.status).toBe(200);
    expect(health.headers.get('x-agentgate-upstream')).toBe('agent');
    // Served on the socket the dial opened: no new connection after the pause.
    expect(sockets.size).toBe(1);
  }, 15_000);
});
