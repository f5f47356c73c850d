// agentgate/client against the real app and real agents: the calls, the typed errors, streaming
// both ways, aborts, the retry helper, WebSockets, and its types held against /openapi.json.
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { WebSocket as UndiciWebSocket } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AgentConnectionLostError,
  AgentDisconnectedError,
  AgentgateError,
  AgentNotFoundError,
  AGENT_STATUSES,
  CLIENT_ERROR_CODES,
  createClient,
  ERROR_CATALOGUE,
  InvalidRequestError,
  PROBLEM_KEYS,
  RESPONSE_KEYS,
  ROUTES,
  UnauthenticatedError,
  withRetry,
  WorkspaceNotFoundError,
  type AgentgateClient,
  type WebSocketLike,
} from '../../src/client/index.js';
import { HEAD_REFUSED_HINT } from '../../src/client/answers.js';
import { agentFixtures, closedPortAddress } from '../support/agents.js';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { startEchoAgent, type EchoAgent } from '../support/echo-agent.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { startWsAgent, type WsAgent } from '../support/ws-agent.js';

const fixtures = agentFixtures();
let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };
let echo: EchoAgent;
let wsAgent: WsAgent;
let ws: Workspace;
let gone: Workspace;
let token: string;
let client: AgentgateClient;

// Long enough that a test which ends sooner did not wait for it; black-holed dials need it.
const DIAL_TIMEOUT_MS = 10_000;

beforeAll(async () => {
  t = await startTestApp({ env: { AGENTGATE_DIAL_TIMEOUT_MS: String(DIAL_TIMEOUT_MS), AGENTGATE_DIAL_BACKOFF_MS: '1000' } });
  rows = await AgentRows.open(t.database.url);
  echo = await startEchoAgent();
  wsAgent = await startWsAgent();
  ws = await createWorkspace(t, [{ name: 'main', address: `${echo.address}/base` }]);
  await rows.heartbeat(ws.agents[0]!.id);
  gone = await createWorkspace(t, [{ name: 'main', address: echo.address }]);
  await rows.heartbeat(gone.agents[0]!.id, 5_000);
  await rows.goodbye(gone.agents[0]!.id, 3_000);
  const created = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'chat', scope: 'conn' } });
  expect(created.status, created.text).toBe(201);
  token = created.body.token as string;
  client = createClient({ baseUrl: t.url, token });
});
afterAll(async () => {
  await rows.close();
  await echo.close();
  await wsAgent.close();
  await t.close();
});

/** The rejection of `promise`, which must reject. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('conn and agent', () => {
  it('conn gives the agent and the connection, dialed then cached', async () => {
    const first = await client.conn(ws.id);
    expect(first).toMatchObject({ workspaceId: ws.id, agent: { id: ws.agents[0]!.id, name: 'main', status: 'connected' }, degraded: false });
    expect(first.connection.cached).toBe(false);
    const second = await client.conn(ws.id, { agent: 'main' });
    expect(second.connection.cached).toBe(true);
    expect(second.connection.dialedAt).toBe(first.connection.dialedAt);
  });

  it('agent gives the status without dialing, also of a disconnected agent', async () => {
    const status = await client.agent(gone.id);
    expect(status).toEqual({
      workspaceId: gone.id,
      agent: expect.objectContaining({ id: gone.agents[0]!.id, name: 'main', status: 'disconnected' }),
    });
  });

  it('a disconnected agent is an AgentDisconnectedError carrying the hint for the model', async () => {
    const error = await rejection(client.conn(gone.id));
    expect(error).toBeInstanceOf(AgentDisconnectedError);
    const e = error as AgentDisconnectedError;
    expect(e).toBeInstanceOf(AgentgateError);
    expect(e.code).toBe('AGENT_DISCONNECTED');
    expect(e.status).toBe(409);
    expect(e.retryable).toBe(false);
    expect(e.hint).toBe(ERROR_CATALOGUE.AGENT_DISCONNECTED.hint);
    expect(e.workspaceId).toBe(gone.id);
    expect(e.agentId).toBe(gone.agents[0]!.id);
    expect(e.agentStatus).toBe('disconnected');
    expect(e.disconnectedSeconds).toBeGreaterThanOrEqual(2);
    expect(e.requestId).toMatch(/./);
    expect(e.method).toBe('POST');
    expect(e.proxied).toBe(false);
    expect(inspect(e, { depth: 5 })).not.toContain(token);
  });

  it('an unknown workspace is a WorkspaceNotFoundError, an unknown agent an AgentNotFoundError', async () => {
    const missing = await rejection(client.conn(randomUUID()));
    expect(missing).toBeInstanceOf(WorkspaceNotFoundError);
    expect((missing as WorkspaceNotFoundError).status).toBe(404);
    expect((missing as WorkspaceNotFoundError).hint).toBe(ERROR_CATALOGUE.WORKSPACE_NOT_FOUND.hint);
    expect(await rejection(client.agent(ws.id, { agent: 'nope' }))).toBeInstanceOf(AgentNotFoundError);
  });

  it('a wrong token is an UnauthenticatedError', async () => {
    const stranger = createClient({ baseUrl: t.url, token: 'agconn_not-a-token' });
    expect(await rejection(stranger.conn(ws.id))).toBeInstanceOf(UnauthenticatedError);
  });

  it('no gate at the address is GATE_UNREACHABLE, retryable, and shows no token', async () => {
    const nowhere = createClient({ baseUrl: await closedPortAddress(), token });
    const error = (await rejection(nowhere.conn(ws.id))) as AgentgateError;
    expect(error.constructor).toBe(AgentgateError);
    expect(error).toMatchObject({ code: 'GATE_UNREACHABLE', status: 0, retryable: true, proxied: false });
    expect(error.detail).toContain('ECONNREFUSED');
    expect(inspect(error, { depth: 5 })).not.toContain(token);
  });
});

describe('something in between that is not the gate', () => {
  const LOGIN_PAGE_WS = '00000000-0000-4000-8000-000000000000';
  let lb: http.Server;
  let lbUrl: string;
  beforeAll(async () => {
    // A load balancer whose backend is down: HTML, no problem, no upstream header.
    // A login page answered with a 200 for one workspace id.
    lb = http.createServer((req, res) => {
      if (req.url?.includes(LOGIN_PAGE_WS)) res.writeHead(200, { 'content-type': 'text/html' }).end('<html>sign in</html>');
      else res.writeHead(502, { 'content-type': 'text/html' }).end('<html><h1>502 Bad Gateway</h1></html>');
    });
    await new Promise<void>((resolve) => lb.listen(0, '127.0.0.1', resolve));
    lbUrl = `http://127.0.0.1:${(lb.address() as net.AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => lb.close(() => resolve())));

  it('its answers are UNEXPECTED_RESPONSE, for conn and for a proxied call', async () => {
    const behind = createClient({ baseUrl: lbUrl, token });
    for (const promise of [behind.conn(ws.id), behind.request(ws.id, '/echo')]) {
      const error = (await rejection(promise)) as AgentgateError;
      expect(error.constructor).toBe(AgentgateError);
      expect(error).toMatchObject({ code: 'UNEXPECTED_RESPONSE', status: 502, retryable: true });
      expect(error.hint).toMatch(/./);
    }
  });

  it('a 200 that is not the documented JSON is UNEXPECTED_RESPONSE, not a success', async () => {
    const behind = createClient({ baseUrl: lbUrl, token });
    const error = (await rejection(behind.conn(LOGIN_PAGE_WS))) as AgentgateError;
    expect(error).toMatchObject({ code: 'UNEXPECTED_RESPONSE', status: 200, retryable: false });
  });

  it('a 200 to a proxied call without x-agentgate-upstream: agent is UNEXPECTED_RESPONSE, not the agent’s answer', async () => {
    const behind = createClient({ baseUrl: lbUrl, token });
    for (const method of ['GET', 'POST', 'HEAD']) {
      const error = (await rejection(behind.request(LOGIN_PAGE_WS, '/exec', { method }))) as AgentgateError;
      expect(error.constructor).toBe(AgentgateError);
      expect(error).toMatchObject({ code: 'UNEXPECTED_RESPONSE', status: 200, retryable: false, proxied: true, method });
      expect(error.detail).toContain('x-agentgate-upstream');
    }
  });
});

describe('proxied calls', () => {
  it('a GET reaches the agent and its answer comes back as the Response', async () => {
    const response = await client.request(ws.id, '/echo/a?x=1', { headers: { 'x-custom': 'kept', authorization: 'Bearer overridden' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-agentgate-upstream')).toBe('agent');
    const body = (await response.json()) as { method: string; url: string; headers: Record<string, string> };
    expect(body.method).toBe('GET');
    expect(body.url).toBe('/base/echo/a?x=1');
    expect(body.headers['x-custom']).toBe('kept');
    expect(body.headers.authorization).toBeUndefined();
  });

  it('the agent’s own error statuses, and its own problem+json, are returned untouched', async () => {
    const failed = await client.request(ws.id, 'status?code=503');
    expect(failed.status).toBe(503);
    expect(await failed.text()).toBe('status 503');

    // An agent that answers exactly like the gate refusing: only the upstream header tells them apart.
    const lookalike = JSON.stringify({ type: 'urn:x', title: 't', status: 409, detail: 'd', code: 'AGENT_DISCONNECTED', retryable: false });
    const previous = echo.handle;
    echo.handle = (req, res) => {
      if (!req.url?.endsWith('/lookalike')) return previous?.(req, res) ?? false;
      res.writeHead(409, { 'content-type': 'application/problem+json' }).end(lookalike);
      return true;
    };
    try {
      const response = await client.request(ws.id, '/lookalike');
      expect(response.status).toBe(409);
      expect(await response.text()).toBe(lookalike);
    } finally {
      echo.handle = previous;
    }
  });

  it('a streamed POST body (web ReadableStream) reaches the agent whole; so does a Node stream', async () => {
    const chunk = Buffer.alloc(64 * 1024, 7);
    const count = 32;
    const expected = createHash('sha256');
    for (let i = 0; i < count; i += 1) expected.update(chunk);
    const digest = expected.digest('hex');
    let sent = 0;
    const web = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === count) controller.close();
        else {
          sent += 1;
          controller.enqueue(new Uint8Array(chunk));
        }
      },
    });
    const r1 = await client.request(ws.id, '/echo/upload', { method: 'POST', body: web, headers: { 'content-type': 'application/octet-stream' } });
    expect(await r1.json()).toMatchObject({ method: 'POST', bodyBytes: chunk.length * count, bodySha256: digest });

    const node = Readable.from((function* () {
      for (let i = 0; i < count; i += 1) yield chunk;
    })());
    const r2 = await client.request(ws.id, '/echo/upload', { method: 'PUT', body: node });
    expect(await r2.json()).toMatchObject({ method: 'PUT', bodyBytes: chunk.length * count, bodySha256: digest });
  });

  it('the response body is the agent’s stream, read as it comes', async () => {
    const response = await client.request(ws.id, '/stream?n=4&gap=30');
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    let reads = 0;
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      text += decoder.decode(r.value, { stream: true });
      reads += 1;
    }
    expect(text.trim().split('\n').map((line) => line.split(' ').slice(0, 2).join(' '))).toEqual(['chunk 0', 'chunk 1', 'chunk 2', 'chunk 3']);
    expect(reads).toBeGreaterThan(1);
  });

  it('the gate sets x-agentgate-upstream: agent on every agent answer, a bodiless one and a 3xx included', async () => {
    for (const [method, path, status] of [
      ['HEAD', '/echo', 200],
      ['GET', 'status?code=204', 204],
      ['GET', 'status?code=302', 302],
      ['DELETE', 'status?code=404', 404],
    ] as const) {
      const response = await client.request(ws.id, path, { method });
      expect(response.status, `${method} ${path}`).toBe(status);
      expect(response.headers.get('x-agentgate-upstream')).toBe('agent');
      await response.body?.cancel();
    }
  });

  it('a HEAD the gate refuses has no body: UNEXPECTED_RESPONSE with its status, retryable by that status', async () => {
    const refused = (await rejection(client.request(gone.id, '/echo', { method: 'HEAD' }))) as AgentgateError;
    expect(refused.constructor).toBe(AgentgateError);
    expect(refused).toMatchObject({ code: 'UNEXPECTED_RESPONSE', status: 409, retryable: false, proxied: true, method: 'HEAD', hint: HEAD_REFUSED_HINT });
    expect(refused.detail).toMatch(/HEAD.*no body/);
    expect(refused.requestId).toMatch(/./);

    const down = await createWorkspace(t, [{ name: 'main', address: await closedPortAddress() }]);
    await rows.heartbeat(down.agents[0]!.id);
    const unreachable = (await rejection(client.request(down.id, '/echo', { method: 'HEAD' }))) as AgentgateError;
    expect(unreachable).toMatchObject({ code: 'UNEXPECTED_RESPONSE', status: 502, retryable: true, hint: HEAD_REFUSED_HINT });
  });

  it('the gate’s refusal of a proxied call is its typed error, marked proxied with its method', async () => {
    const error = await rejection(client.request(gone.id, '/echo', { method: 'DELETE' }));
    expect(error).toBeInstanceOf(AgentDisconnectedError);
    expect(error).toMatchObject({ proxied: true, method: 'DELETE', workspaceId: gone.id });
  });
});

describe('paths that would leave the route', () => {
  // Each is refused by the client, sending nothing: fetch would resolve the first ones out of
  // `/workspaces/<id>/conn/`, and the gate refuses every one of them (contract §6).
  const BAD_PATHS = [
    '..',
    '.',
    './x',
    'a/./b',
    'a/../b',
    '../../w2',
    '%2e%2e/x',
    '%2E%2E/x',
    '%2e./x',
    '.%2E/x',
    'a/%2e',
    '%252e%252e/x',
    '..;x/y',
    'a%2fb',
    'a%2Fb',
    'a%5cb',
    'a%5Cb',
    'a\\b',
    '\\..\\x',
    '.\t./x',
    'a\nb',
    '//evil.example/x',
    'http://evil.example/x',
    'a//b',
    'a#/../../x',
    'a%zz',
  ];
  let gateCalls: string[];
  let counting: http.Server;
  let countingUrl: string;
  beforeAll(async () => {
    gateCalls = [];
    counting = http.createServer((req, res) => {
      gateCalls.push(`${req.method} ${req.url}`);
      res.writeHead(500).end();
    });
    await new Promise<void>((resolve) => counting.listen(0, '127.0.0.1', resolve));
    countingUrl = `http://127.0.0.1:${(counting.address() as net.AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => counting.close(() => resolve())));

  /** A WebSocket class that records being built: a refused path must not get that far. */
  const built: string[] = [];
  class RecordingWebSocket {
    readyState = 0;
    constructor(url: string) {
      built.push(url);
    }
    close(): void {}
    addEventListener(): void {}
    removeEventListener(): void {}
  }

  beforeEach(() => {
    gateCalls.length = 0;
    built.length = 0;
  });

  it.each(BAD_PATHS)('%j: INVALID_REQUEST from request() and websocket(), nothing sent', async (path) => {
    const c = createClient({ baseUrl: countingUrl, token, WebSocket: RecordingWebSocket });
    for (const [method, call] of [
      ['POST', () => c.request(ws.id, path, { method: 'POST', body: 'x' })],
      ['GET', () => c.websocket(ws.id, path)],
    ] as const) {
      const error = await rejection(call());
      expect(error).toBeInstanceOf(InvalidRequestError);
      expect(error).toMatchObject({ code: 'INVALID_REQUEST', status: 0, retryable: false, proxied: true, method, workspaceId: ws.id });
    }
    expect(gateCalls).toEqual([]);
    expect(built).toEqual([]);
  });

  it.each(['..', '.', ''])('the workspace id %j is refused by every call, nothing sent', async (id) => {
    const c = createClient({ baseUrl: countingUrl, token, WebSocket: RecordingWebSocket });
    for (const call of [() => c.conn(id), () => c.agent(id), () => c.request(id, '/echo'), () => c.websocket(id, '/term')]) {
      expect(await rejection(call())).toBeInstanceOf(InvalidRequestError);
    }
    expect(gateCalls).toEqual([]);
    expect(built).toEqual([]);
  });

  it('the reviewer’s examples do not reach the control routes, even with an admin token', async () => {
    const admin = createClient({ baseUrl: t.url, token: ENV_ADMIN_TOKEN });
    const other = await createWorkspace(t, [{ name: 'main', address: echo.address }]);
    const deleted = await rejection(admin.request(ws.id, `../../${other.id}`, { method: 'DELETE' }));
    expect(deleted).toBeInstanceOf(InvalidRequestError);
    expect((await t.call('GET', `/workspaces/${other.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(200);

    const countTokens = async () => (await t.handle.db.selectFrom('api_tokens').select('id').execute()).length;
    const before = await countTokens();
    const created = await rejection(
      admin.request(ws.id, '%2e%2e/%2e%2e/%2e%2e/tokens', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'smuggled', scope: 'admin' }),
      }),
    );
    expect(created).toBeInstanceOf(InvalidRequestError);
    expect(await countTokens()).toBe(before);
  });

  it('good paths still reach the agent, a query with dots and slashes included', async () => {
    for (const [path, expected] of [
      ['/echo/exec', '/base/echo/exec'],
      ['echo/exec', '/base/echo/exec'],
      ['echo/files?path=a/../b', '/base/echo/files?path=a/../b'],
      ['echo/a.b/..c/...?x=%2e%2e%2f', '/base/echo/a.b/..c/...?x=%2e%2e%2f'],
    ] as const) {
      const response = await client.request(ws.id, path);
      expect(response.status, path).toBe(200);
      expect(((await response.json()) as { url: string }).url).toBe(expected);
    }
  });
});

describe('aborts', () => {
  it('an abort while the gate dials a black-holed agent rejects at once with the AbortError, not a gate error', async () => {
    const hole = await fixtures.blackHole();
    const holed = await createWorkspace(t, [{ name: 'main', address: hole.address }]);
    await rows.heartbeat(holed.agents[0]!.id);
    for (const call of [(signal: AbortSignal) => client.conn(holed.id, { signal }), (signal: AbortSignal) => client.request(holed.id, '/x', { signal })]) {
      const controller = new AbortController();
      const started = performance.now();
      const pending = rejection(call(controller.signal));
      await new Promise((resolve) => setTimeout(resolve, 100));
      controller.abort();
      const error = await pending;
      expect(error).not.toBeInstanceOf(AgentgateError);
      expect(error).toBe(controller.signal.reason);
      expect((error as DOMException).name).toBe('AbortError');
      // Settled well before the dial bound, which is what the gate would otherwise have waited.
      expect(performance.now() - started).toBeLessThan(DIAL_TIMEOUT_MS / 2);
    }
    // The gate saw the caller leave (client_closed), and nothing was reported as a dial timeout.
    const metrics = await t.call('GET', '/metrics');
    expect(metrics.text).toMatch(/agentgate_conn_total\{code="client_closed"\} [1-9]/);
    expect(metrics.text).not.toMatch(/agentgate_conn_total\{code="AGENT_DIAL_TIMEOUT"\}/);
  });

  it('an abort with a reason rejects with that reason', async () => {
    const reason = new Error('the user left the chat');
    expect(await rejection(client.conn(ws.id, { signal: AbortSignal.abort(reason) }))).toBe(reason);
  });
});

describe('the retry helper against the gate', () => {
  it('retries a retryable error, honouring Retry-After, then succeeds', async () => {
    const agent = await fixtures.agent({ status: 503 });
    const flaky = await createWorkspace(t, [{ name: 'main', address: agent.address }]);
    await rows.heartbeat(flaky.agents[0]!.id);
    const retries: Array<{ code: string; retryAfter: number | undefined; delayMs: number }> = [];
    const result = await withRetry(({ signal }) => client.conn(flaky.id, { signal }), {
      baseDelayMs: 20,
      maxAttempts: 5,
      budgetMs: 8_000,
      onRetry: ({ error, delayMs }) => {
        retries.push({ code: error.code, retryAfter: error.retryAfter, delayMs });
        // The agent recovers once the first failure is in.
        agent.setHealth({ status: 200 });
      },
    });
    expect(result.agent.id).toBe(flaky.agents[0]!.id);
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries.every((r) => r.code === 'AGENT_UNREACHABLE')).toBe(true);
    // The first failure is remembered for AGENTGATE_DIAL_BACKOFF_MS: the next attempt, within that
    // window, is told when to come back (Retry-After), and the helper waits that long.
    for (const r of retries.filter((x) => x.retryAfter !== undefined)) expect(r.delayMs).toBeGreaterThanOrEqual(r.retryAfter! * 1000);
    expect(retries.some((r) => r.retryAfter !== undefined)).toBe(true);
  });

  it('repeats a proxied GET whose connection was lost, never a POST', async () => {
    const crashes = () => echo.records.filter((r) => r.url === '/base/crash-before').length;
    const before = crashes();
    const post = await rejection(withRetry(() => client.request(ws.id, '/crash-before', { method: 'POST', body: 'side effects' }), { baseDelayMs: 10, maxAttempts: 3 }));
    expect(post).toBeInstanceOf(AgentConnectionLostError);
    expect((post as AgentConnectionLostError).retryable).toBe(true);
    expect(crashes() - before).toBe(1);

    const get = await rejection(withRetry(() => client.request(ws.id, '/crash-before'), { baseDelayMs: 10, maxAttempts: 3 }));
    expect(get).toBeInstanceOf(AgentConnectionLostError);
    expect(crashes() - before).toBe(1 + 3);
  });

  it('does not retry what is not retryable', async () => {
    let attempts = 0;
    const error = await rejection(
      withRetry(() => {
        attempts += 1;
        return client.conn(gone.id);
      }),
    );
    expect(error).toBeInstanceOf(AgentDisconnectedError);
    expect(attempts).toBe(1);
  });
});

describe('WebSocket', () => {
  let wsWorkspace: Workspace;
  beforeAll(async () => {
    wsWorkspace = await createWorkspace(t, [{ name: 'main', address: wsAgent.address }]);
    await rows.heartbeat(wsWorkspace.agents[0]!.id);
  });

  async function echoOnce(socket: WebSocketLike & { send(data: string): void }): Promise<string> {
    const reply = new Promise<string>((resolve) => socket.addEventListener('message', (event: { data: unknown }) => resolve(String(event.data)), { once: true }));
    socket.send('hello');
    return reply;
  }

  const hasGlobalWebSocket = typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function';

  it(`with the global WebSocket: ${hasGlobalWebSocket ? 'opens through the gate' : 'a clear error naming the Node version'} (Node ${process.version})`, async () => {
    if (hasGlobalWebSocket) {
      const socket = (await client.websocket(wsWorkspace.id, '/term')) as WebSocketLike & { send(data: string): void };
      expect(await echoOnce(socket)).toBe('hello');
      expect(wsAgent.upgrades.at(-1)?.headers.authorization).toBeUndefined();
      socket.close();
    } else {
      const error = await rejection(client.websocket(wsWorkspace.id, '/term'));
      expect(error).not.toBeInstanceOf(AgentgateError);
      expect((error as Error).message).toContain(`Node ${process.version}`);
      expect((error as Error).message).toContain('Node 22');
    }
  });

  it('with a WebSocket class given to the client (undici’s): opens, and a refusal is the typed error', async () => {
    const withUndici = createClient({ baseUrl: t.url, token, WebSocket: UndiciWebSocket });
    const socket = await withUndici.websocket(wsWorkspace.id, 'term', { agent: 'main' });
    expect(await echoOnce(socket)).toBe('hello');
    socket.close();
    expect(await rejection(withUndici.websocket(gone.id, '/term'))).toBeInstanceOf(AgentDisconnectedError);
    const declined = (await rejection(withUndici.websocket(wsWorkspace.id, '/declined'))) as AgentgateError;
    expect(declined).toMatchObject({ code: 'UPGRADE_FAILED', retryable: true, proxied: true, hint: CLIENT_ERROR_CODES.UPGRADE_FAILED.hint });
    expect(declined.hint).not.toMatch(/agent did not/);
  });

  it('the gate refusing the upgrade itself (its per-token WebSocket cap) is UPGRADE_FAILED, retryable', async () => {
    const capped = await startTestApp({ database: t.database, env: { AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN: '1' } });
    try {
      const c = createClient({ baseUrl: capped.url, token, WebSocket: UndiciWebSocket });
      const first = await c.websocket(wsWorkspace.id, '/term');
      const upgradesBefore = wsAgent.upgrades.length;
      const second = (await rejection(c.websocket(wsWorkspace.id, '/term'))) as AgentgateError;
      expect(second.constructor).toBe(AgentgateError);
      expect(second).toMatchObject({ code: 'UPGRADE_FAILED', retryable: true, proxied: true, hint: CLIENT_ERROR_CODES.UPGRADE_FAILED.hint });
      // The gate refused it (429, its cap); the agent never saw it.
      expect(wsAgent.upgrades.length).toBe(upgradesBefore);
      expect(capped.logs.some((line) => line.includes('"status":429') && line.includes('RATE_LIMITED'))).toBe(true);
      first.close();
    } finally {
      await capped.close();
    }
  });

  it('a goodbye between conn() and the upgrade is the typed error conn() now gives, not UPGRADE_FAILED', async () => {
    const leaving = await createWorkspace(t, [{ name: 'main', address: wsAgent.address }]);
    const agentId = leaving.agents[0]!.id;
    await rows.heartbeat(agentId);
    let conns = 0;
    // The agent says goodbye just after the gate answered the first conn(), before the upgrade.
    const goodbyeAfterFirstConn: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      // The client passes its URLs as strings.
      if ((input as string).endsWith('/conn') && ++conns === 1) await rows.goodbye(agentId);
      return response;
    };
    const c = createClient({ baseUrl: t.url, token, WebSocket: UndiciWebSocket, fetch: goodbyeAfterFirstConn });
    const upgradesBefore = wsAgent.upgrades.length;
    const error = await rejection(c.websocket(leaving.id, '/term'));
    expect(error).toBeInstanceOf(AgentDisconnectedError);
    expect(error).toMatchObject({ workspaceId: leaving.id, agentId });
    expect(conns).toBe(2);
    expect(wsAgent.upgrades.length).toBe(upgradesBefore);
  });
});

describe('the client’s types against /openapi.json', () => {
  // why: the OpenAPI document is untyped JSON, walked by key.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let doc: any;
  beforeAll(async () => {
    const r = await t.call('GET', '/openapi.json');
    expect(r.status).toBe(200);
    doc = r.body;
  });

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
  const deref = (schema: any): any => {
    if (typeof schema?.$ref !== 'string') return schema;
    const name = (schema.$ref as string).replace('#/components/schemas/', '');
    return deref(doc.components.schemas[name]);
  };
  const keys = (schema: unknown) => Object.keys(deref(schema).properties as object).sort();
  const sorted = (table: object) => Object.keys(table).sort();

  it('every route the client calls exists, with its methods and the agent query', () => {
    expect(doc.paths[ROUTES.conn.path][ROUTES.conn.method.toLowerCase()]).toBeDefined();
    expect(doc.paths[ROUTES.agent.path][ROUTES.agent.method.toLowerCase()]).toBeDefined();
    expect(Object.keys(doc.paths[ROUTES.proxy.path] as object).sort()).toEqual(ROUTES.proxy.methods.map((m) => m.toLowerCase()).sort());
    for (const route of [ROUTES.conn, ROUTES.agent]) {
      const parameters = doc.paths[route.path][route.method.toLowerCase()].parameters as Array<{ in: string; name: string }>;
      expect(parameters.map((p) => `${p.in}:${p.name}`).sort()).toEqual(['path:workspaceId', 'query:agent']);
    }
  });

  it('the conn and agent bodies have exactly the keys of the client’s types', () => {
    const conn = deref(doc.paths[ROUTES.conn.path].post.responses['200'].content['application/json'].schema);
    const agent = deref(doc.paths[ROUTES.agent.path].get.responses['200'].content['application/json'].schema);
    expect(keys(conn)).toEqual(sorted(RESPONSE_KEYS.conn));
    expect(keys(agent)).toEqual(sorted(RESPONSE_KEYS.agent));
    expect(keys(conn.properties.agent)).toEqual(sorted(RESPONSE_KEYS.agentInfo));
    expect(keys(agent.properties.agent)).toEqual(sorted(RESPONSE_KEYS.agentInfo));
    expect(keys(conn.properties.connection)).toEqual(sorted(RESPONSE_KEYS.connection));
    const statuses = (deref(conn.properties.agent).properties.status.anyOf as Array<{ enum: string[] }>).flatMap((s) => s.enum);
    expect(statuses.sort()).toEqual(sorted(AGENT_STATUSES));
  });

  it('the problem schema has exactly the members AgentgateError carries', () => {
    const problem = deref(doc.paths[ROUTES.conn.path].post.responses['4XX'].content['application/json'].schema);
    expect(keys(problem)).toEqual(sorted(PROBLEM_KEYS));
    const error = new AgentgateError({ code: 'X', status: 500, detail: 'd' });
    for (const key of keys(problem)) expect(Object.hasOwn(error, key), `AgentgateError has no ${key}`).toBe(true);
  });
});
