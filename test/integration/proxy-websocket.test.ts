// WebSocket upgrades through the proxy (contract §4.1): frames both ways, headers and signing of the
// upgrade request, close propagation in both directions, refusals that never reach the agent,
// and shutdown closing proxied sockets. The agent is a `ws` server on a real socket.
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, type RawData } from 'ws';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { startWsAgent, type AgentSide, type WsAgent } from '../support/ws-agent.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { checkGateSignature } from '../support/signature.js';


// ---------------------------------------------------------------------------------------------
// Clients

interface Client {
  ws: WebSocket;
  /** The 101 response. */
  upgraded: Promise<http.IncomingMessage>;
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string; at: number }>;
  nextMessage(timeoutMs?: number): Promise<{ data: Buffer; isBinary: boolean }>;
}

const clients = new Set<WebSocket>();

function openClient(base: string, path: string, headers: Record<string, string> = { authorization: `Bearer ${ENV_ADMIN_TOKEN}` }): Client {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}${path}`, { headers });
  clients.add(ws);
  const queue: Array<{ data: Buffer; isBinary: boolean }> = [];
  const waiting: Array<(m: { data: Buffer; isBinary: boolean }) => void> = [];
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const message = { data: Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data), isBinary };
    const waiter = waiting.shift();
    if (waiter) waiter(message);
    else queue.push(message);
  });
  const upgraded = new Promise<http.IncomingMessage>((resolve, reject) => {
    ws.once('upgrade', resolve);
    ws.once('unexpected-response', (_req, res: http.IncomingMessage) => reject(new Error(`unexpected ${res.statusCode}`)));
    ws.once('error', reject);
  });
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  // Both are awaited by the tests that need them; keep an early failure from going unhandled.
  upgraded.catch(() => undefined);
  opened.catch(() => undefined);
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
    ws.once('close', (code, reason) => {
      clients.delete(ws);
      resolve({ code, reason: reason.toString(), at: Date.now() });
    }),
  );
  return {
    ws,
    upgraded,
    opened,
    closed,
    nextMessage: (timeoutMs = 2_000) => {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      return within(new Promise((resolve) => waiting.push(resolve)), timeoutMs, 'no message');
    },
  };
}

interface Refusal {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: { code: string; status: number; [key: string]: unknown };
}

/** An upgrade the gate must refuse: resolves with the non-101 response and its problem body. */
function refusedUpgrade(base: string, path: string, headers: Record<string, string> = {}): Promise<Refusal> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}${path}`, { headers });
    ws.on('error', reject);
    ws.on('open', () => {
      ws.terminate();
      reject(new Error('the upgrade was accepted'));
    });
    ws.on('unexpected-response', (_req, res: http.IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }));
      res.on('error', reject);
    });
  });
}

/** A raw upgrade request, for paths a WebSocket client would normalise (`%2e%2e`). */
function rawUpgrade(base: string, path: string, token = ENV_ADMIN_TOKEN): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(base);
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(
        [
          `GET ${path} HTTP/1.1`,
          `Host: ${url.host}`,
          `Authorization: Bearer ${token}`,
          'Connection: Upgrade',
          'Upgrade: websocket',
          'Sec-WebSocket-Version: 13',
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
          '',
          '',
        ].join('\r\n'),
      );
    });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('end', () => socket.destroy());
    socket.on('close', () => {
      const [head = '', ...rest] = data.split('\r\n\r\n');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: rest.join('\r\n\r\n') });
    });
    socket.on('error', reject);
  });
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------

let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };
let agent: WsAgent;
let ws: Workspace;

beforeAll(async () => {
  t = await startTestApp();
  rows = await AgentRows.open(t.database.url);
  agent = await startWsAgent();
  ws = await createWorkspace(t, [{ name: 'main', address: `${agent.address}/base` }]);
  await rows.heartbeat(ws.agents[0]!.id);
});
afterEach(() => {
  for (const client of clients) client.terminate();
  clients.clear();
});
afterAll(async () => {
  await rows.close();
  await agent.close();
  await t.close();
});

const termPath = () => `/workspaces/${ws.id}/conn/term?x=1`;

describe('proxied WebSocket', () => {
  it('carries text and binary frames both ways; the upgrade is signed and stripped of credentials', async () => {
    const next = agent.nextConnection();
    const client = openClient(t.url, termPath(), {
      authorization: `Bearer ${ENV_ADMIN_TOKEN}`,
      cookie: 'session=secret',
      'x-agentgate-foo': 'bar',
      'x-custom': 'kept',
    });
    const response = await client.upgraded;
    expect(response.statusCode).toBe(101);
    expect(response.headers['x-agentgate-upstream']).toBe('agent');
    expect(response.headers['set-cookie']).toBeUndefined();
    await client.opened;
    const side = await within(next, 2_000, 'the agent accepted no WebSocket');

    expect(side.req.url).toBe('/base/term?x=1');
    // The agent's own host and port, as for any proxied request.
    expect(side.req.headers.host).toBe(new URL(agent.address).host);
    expect(side.req.headers.authorization).toBeUndefined();
    expect(side.req.headers.cookie).toBeUndefined();
    expect(side.req.headers['x-agentgate-foo']).toBeUndefined();
    expect(side.req.headers['x-custom']).toBe('kept');
    expect(side.req.headers['x-forwarded-for']).toBe('127.0.0.1');
    // No trusted proxy is configured: the caller's Host is not passed on.
    expect(side.req.headers['x-forwarded-host']).toBeUndefined();
    expect(side.req.headers['x-request-id']).toBe(response.headers['x-request-id']);
    const signature = side.req.headers['x-agentgate-auth'];
    expect(typeof signature).toBe('string');
    expect(checkGateSignature(t.app.signingKey, signature, ws.agents[0]!.id, 'GET', '/base/term?x=1')).toBe('ok');
    expect(checkGateSignature(t.app.signingKey, signature, ws.agents[0]!.id, 'GET', '/term?x=1')).toBe('mismatch');

    // Client to agent and back.
    client.ws.send('héllo, agent');
    const text = await client.nextMessage();
    expect(text.isBinary).toBe(false);
    expect(text.data.toString('utf8')).toBe('héllo, agent');
    const payload = randomBytes(256 * 1024);
    client.ws.send(payload);
    const binary = await client.nextMessage();
    expect(binary.isBinary).toBe(true);
    expect(binary.data.equals(payload)).toBe(true);
    expect(side.received.map((m) => m.isBinary)).toEqual([false, true]);
    expect(side.received[0]!.data.toString('utf8')).toBe('héllo, agent');
    expect(side.received[1]!.data.equals(payload)).toBe(true);

    // Agent to client, unprompted.
    side.socket.send('from the agent');
    const pushed = await client.nextMessage();
    expect(pushed).toMatchObject({ isBinary: false });
    expect(pushed.data.toString('utf8')).toBe('from the agent');
    side.socket.send(Buffer.from([0, 1, 2, 255]), { binary: true });
    const pushedBinary = await client.nextMessage();
    expect(pushedBinary.isBinary).toBe(true);
    expect([...pushedBinary.data]).toEqual([0, 1, 2, 255]);

    client.ws.close();
    await within(side.closed, 2_000, 'the agent saw no close');
  });

  it('removes the agent selector from the forwarded query, by query or header', async () => {
    for (const [path, headers] of [
      [`/workspaces/${ws.id}/conn/term?agent=main&x=1`, {}],
      [`/workspaces/${ws.id}/conn/term?x=1`, { 'x-agentgate-agent': 'main' }],
    ] as const) {
      const next = agent.nextConnection();
      const client = openClient(t.url, path, { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, ...headers });
      await client.opened;
      const side = await within(next, 2_000, 'the agent accepted no WebSocket');
      expect(side.req.url).toBe('/base/term?x=1');
      expect(side.req.headers['x-agentgate-agent']).toBeUndefined();
      expect(checkGateSignature(t.app.signingKey, side.req.headers['x-agentgate-auth'], ws.agents[0]!.id, 'GET', '/base/term?x=1')).toBe('ok');
      client.ws.close();
      await within(side.closed, 2_000, 'the agent saw no close');
    }
  });
});

describe('close propagation', () => {
  async function connected(): Promise<{ client: Client; side: AgentSide }> {
    const next = agent.nextConnection();
    const client = openClient(t.url, termPath());
    await client.opened;
    const side = await within(next, 2_000, 'the agent accepted no WebSocket');
    return { client, side };
  }

  it('the client closing cleanly closes the agent side', async () => {
    const { client, side } = await connected();
    const started = Date.now();
    client.ws.close(4000, 'done');
    const closed = await within(side.closed, 1_000, 'the agent side did not close');
    expect(closed.code).toBe(4000);
    expect(closed.at - started).toBeLessThan(1_000);
    expect((await within(client.closed, 1_000, 'the client did not close')).code).toBe(4000);
  });

  it('the client vanishing (TCP reset) closes the agent side', async () => {
    const { client, side } = await connected();
    const started = Date.now();
    client.ws.terminate();
    const closed = await within(side.closed, 1_000, 'the agent side did not close');
    expect(closed.code).toBe(1006);
    expect(closed.at - started).toBeLessThan(1_000);
  });

  it('the agent closing cleanly closes the client with its code and reason', async () => {
    const { client, side } = await connected();
    const started = Date.now();
    side.socket.close(4001, 'agent says bye');
    const closed = await within(client.closed, 1_000, 'the client did not close');
    expect(closed).toMatchObject({ code: 4001, reason: 'agent says bye' });
    expect(closed.at - started).toBeLessThan(1_000);
  });

  it('the agent vanishing (terminate) closes the client', async () => {
    const { client, side } = await connected();
    const started = Date.now();
    side.socket.terminate();
    const closed = await within(client.closed, 1_000, 'the client did not close');
    expect(closed.code).toBe(1006);
    expect(closed.at - started).toBeLessThan(1_000);
  });
});

describe('refused upgrades never reach the agent', () => {
  let disconnected: Workspace;
  let otherOwnersToken: string;

  beforeAll(async () => {
    disconnected = await createWorkspace(t, [{ name: 'main', address: agent.address }]);
    await rows.heartbeat(disconnected.agents[0]!.id, 2_000);
    await rows.goodbye(disconnected.agents[0]!.id);
    const created = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'other-owner', scope: 'conn', ownerId: randomUUID() } });
    expect(created.status).toBe(201);
    otherOwnersToken = created.body.token as string;
  });

  /** Runs `refuse` and checks that no TCP connection nor upgrade request reached the agent. */
  async function untouched<T>(refuse: () => Promise<T>): Promise<T> {
    const before = { tcp: agent.tcpOpened(), upgrades: agent.upgrades.length, open: agent.open() };
    const result = await refuse();
    // Anything that did get through would have arrived by now.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect({ tcp: agent.tcpOpened(), upgrades: agent.upgrades.length, open: agent.open() }).toEqual(before);
    return result;
  }

  it.each([
    ['no token', undefined, 401, 'UNAUTHENTICATED'],
    ['an unknown token', 'not-a-real-token', 401, 'UNAUTHENTICATED'],
  ])('%s → 401 UNAUTHENTICATED', async (_what, token, status, code) => {
    const r = await untouched(() => refusedUpgrade(t.url, termPath(), token ? { authorization: `Bearer ${token}` } : {}));
    expect(r.status).toBe(status);
    expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(r.headers['x-agentgate-upstream']).toBeUndefined();
    expect(r.body).toMatchObject({ code, status });
  });

  it("an agent's token → 403 FORBIDDEN", async () => {
    const r = await untouched(() => refusedUpgrade(t.url, termPath(), { authorization: `Bearer ${ws.agents[0]!.token}` }));
    expect(r.status).toBe(403);
    expect(r.body).toMatchObject({ code: 'FORBIDDEN', status: 403 });
  });

  it('a disconnected agent (goodbye) → 409 AGENT_DISCONNECTED', async () => {
    const r = await untouched(() =>
      refusedUpgrade(t.url, `/workspaces/${disconnected.id}/conn/term?x=1`, { authorization: `Bearer ${ENV_ADMIN_TOKEN}` }),
    );
    expect(r.status).toBe(409);
    expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(r.body).toMatchObject({ code: 'AGENT_DISCONNECTED', status: 409, workspaceId: disconnected.id, agentId: disconnected.agents[0]!.id });
    expect(r.body.hint).toMatch(/restart/i);
  });

  it.each(['/%2e%2e/x', '/%2E%2E/%2e%2e/tokens', '/..;/x', '/a%2fb', '/a%5cb', '/a//b'])('an escaping path %s → 400 INVALID_REQUEST', async (path) => {
    const r = await untouched(() => rawUpgrade(t.url, `/workspaces/${ws.id}/conn${path}`));
    expect(r.status).toBe(400);
    expect(r.head).toMatch(/content-type: application\/problem\+json/i);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('an unknown workspace → 404 WORKSPACE_NOT_FOUND', async () => {
    const r = await untouched(() => refusedUpgrade(t.url, `/workspaces/${randomUUID()}/conn/term`, { authorization: `Bearer ${ENV_ADMIN_TOKEN}` }));
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ code: 'WORKSPACE_NOT_FOUND' });
  });

  it("another owner's conn token → 404 WORKSPACE_NOT_FOUND", async () => {
    const r = await untouched(() => refusedUpgrade(t.url, termPath(), { authorization: `Bearer ${otherOwnersToken}` }));
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ code: 'WORKSPACE_NOT_FOUND' });
  });

  it('a malformed workspace id → 400 INVALID_REQUEST', async () => {
    const r = await untouched(() => refusedUpgrade(t.url, '/workspaces/not-a-uuid/conn/term', { authorization: `Bearer ${ENV_ADMIN_TOKEN}` }));
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('conflicting agent selectors → 400 INVALID_REQUEST', async () => {
    const r = await untouched(() =>
      refusedUpgrade(t.url, `/workspaces/${ws.id}/conn/term?agent=main`, { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'x-agentgate-agent': 'other' }),
    );
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('an upgrade outside the proxy is served as the plain request: no 101', async () => {
    const unknown = await untouched(() => refusedUpgrade(t.url, '/nope'));
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'NOT_FOUND' });
    const health = await untouched(() => refusedUpgrade(t.url, '/healthz'));
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok' });
  });
});

describe('shutdown', () => {
  it('closing the app closes its proxied WebSockets on both sides', async () => {
    const t2 = await startTestApp();
    let closedApp = false;
    try {
      const rows2 = await AgentRows.open(t2.database.url);
      let w: Workspace;
      try {
        w = await createWorkspace(t2, [{ name: 'main', address: agent.address }]);
        await rows2.heartbeat(w.agents[0]!.id);
      } finally {
        await rows2.close();
      }
      const next = agent.nextConnection();
      const client = openClient(t2.url, `/workspaces/${w.id}/conn/shell`);
      await client.opened;
      const side = await within(next, 2_000, 'the agent accepted no WebSocket');
      client.ws.send('still here');
      expect((await client.nextMessage()).data.toString()).toBe('still here');

      await within(t2.close(), 10_000, 'the app did not close');
      closedApp = true;
      const clientClosed = await within(client.closed, 1_000, 'the client did not close');
      expect(clientClosed.code).toBe(1006);
      await within(side.closed, 1_000, 'the agent side did not close');
      expect(client.ws.readyState).toBe(WebSocket.CLOSED);
    } finally {
      if (!closedApp) {
        // Close the client first, so a regression fails above instead of hanging here.
        for (const client of clients) client.terminate();
        await t2.close();
      }
    }
  });
});

describe('upgrades the agent declines', () => {
  it('an upgrade the agent declines passes its answer through, marked as the agent’s', async () => {
    const r = await refusedUpgrade(t.url, `/workspaces/${ws.id}/conn/declined`, { authorization: `Bearer ${ENV_ADMIN_TOKEN}` });
    expect(r.status).toBe(403);
    expect(r.headers['x-agentgate-upstream']).toBe('agent');
    expect(r.headers['x-agent-said']).toBe('no');
    expect(r.headers['x-agentgate-degraded']).toBeUndefined();
    expect(r.body).toEqual({ error: 'no terminal here' });
  });
});

describe('an upgrade pipelined behind another request', () => {
  it('ends that connection and nothing else: the process keeps serving', async () => {
    const socket = net.connect(Number(new URL(t.url).port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    // Both in one write: the upgrade arrives while the first request is still being answered.
    socket.write(
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' +
        `GET /workspaces/${randomUUID()}/conn/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nAuthorization: Bearer ${ENV_ADMIN_TOKEN}\r\n\r\n`,
    );
    await closed;
    expect((await t.call('GET', '/healthz')).status).toBe(200);
  });
});
