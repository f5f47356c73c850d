// The tool-call proxy (contract §4.1): streaming both ways, aborts, failure semantics, headers and
// signing, against a real agent on a real socket.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { startEchoAgent, type EchoAgent } from '../support/echo-agent.js';
import { eventually } from '../support/eventually.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { checkGateSignature } from '../support/signature.js';

let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };
let agent: EchoAgent;
let ws: Workspace;

beforeAll(async () => {
  t = await startTestApp({
    env: { AGENTGATE_BODY_LIMIT_BYTES: String(8 * 1024 * 1024), AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: '400' },
  });
  rows = await AgentRows.open(t.database.url);
  agent = await startEchoAgent();
  ws = await createWorkspace(t, [{ name: 'main', address: `${agent.address}/base` }]);
  await rows.heartbeat(ws.agents[0]!.id);
});
afterAll(async () => {
  await rows.close();
  await agent.close();
  await t.close();
});

const proxied = (path: string, init: RequestInit = {}) =>
  fetch(`${t.url}/workspaces/${ws.id}/conn${path}`, {
    ...init,
    headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, ...(init.headers as Record<string, string> | undefined) },
  });

/** Raw HTTP/1.1 over a socket, for paths fetch would normalise. */
function rawRequest(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(t.url);
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${ENV_ADMIN_TOKEN}\r\nConnection: close\r\n\r\n`);
    });
    let data = '';
    socket.on('data', (c: Buffer) => (data += c.toString()));
    socket.on('end', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      resolve({ status, body: data.split('\r\n\r\n').slice(1).join('\r\n\r\n') });
    });
    socket.on('error', reject);
  });
}

describe('forwarding', () => {
  it('echoes method, path, query, headers and body; strips credentials; signs', async () => {
    const body = JSON.stringify({ tool: 'exec', args: ['ls'] });
    const r = await proxied('/echo/a/b?x=1&agent=main&y=%20z', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', cookie: 'session=secret', 'x-agentgate-foo': 'bar', 'x-custom': 'kept' },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-agentgate-upstream')).toBe('agent');
    expect(r.headers.get('x-agent-echo')).toBe('yes');
    // The echo agent sets a cookie; a tool call has no business setting one on the chat server.
    expect(r.headers.get('set-cookie')).toBeNull();
    const echo = (await r.json()) as { method: string; url: string; headers: Record<string, string>; bodySha256: string };
    expect(echo.method).toBe('POST');
    expect(echo.url).toBe('/base/echo/a/b?x=1&y=%20z');
    expect(echo.bodySha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect(echo.headers['x-custom']).toBe('kept');
    expect(echo.headers.authorization).toBeUndefined();
    expect(echo.headers.cookie).toBeUndefined();
    expect(echo.headers['x-agentgate-foo']).toBeUndefined();
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('http');
    // No trusted proxy is configured: the caller's Host is its own word, not passed on.
    expect(echo.headers['x-forwarded-host']).toBeUndefined();
    expect(echo.headers['x-request-id']).toBe(r.headers.get('x-request-id'));
    const signature = echo.headers['x-agentgate-auth']!;
    expect(checkGateSignature(t.app.signingKey, signature, ws.agents[0]!.id, 'POST', '/base/echo/a/b?x=1&y=%20z')).toBe('ok');
  });

  it("logs the query's parameter names, never their values", async () => {
    const r = await proxied('/echo/q?secret=hunter2-in-query&x=1&flag');
    expect(r.status).toBe(200);
    expect(((await r.json()) as { url: string }).url).toBe('/base/echo/q?secret=hunter2-in-query&x=1&flag');
    // The last log line of this request is written after the response.
    const requestId = r.headers.get('x-request-id');
    await eventually(
      () =>
        t.logs.some((l) => {
          const line = JSON.parse(l) as { reqId?: string; msg?: string };
          return line.reqId === requestId && line.msg === 'request';
        }),
      5_000,
      'the proxied request logged',
    );
    const logs = t.logs.join('\n');
    expect(logs).not.toContain('hunter2-in-query');
    expect(logs).toContain(`/workspaces/${ws.id}/conn/echo/q?secret&x&flag`);
  });

  it('passes agent 4xx and 5xx through unchanged with the upstream header', async () => {
    for (const code of [404, 418, 500, 503]) {
      const r = await proxied(`/status?code=${code}`);
      expect(r.status).toBe(code);
      expect(r.headers.get('x-agentgate-upstream')).toBe('agent');
      expect(r.headers.get('content-type')).toBe('text/plain');
      expect(await r.text()).toBe(`status ${code}`);
    }
  });

  it('carries a 5 MiB upload intact', async () => {
    const payload = randomBytes(5 * 1024 * 1024);
    const r = await proxied('/echo', { method: 'PUT', body: payload, headers: { 'content-type': 'application/octet-stream' } });
    expect(r.status).toBe(200);
    const echo = (await r.json()) as { bodyBytes: number; bodySha256: string };
    expect(echo.bodyBytes).toBe(payload.length);
    expect(echo.bodySha256).toBe(createHash('sha256').update(payload).digest('hex'));
  });

  it('streams: the first chunk arrives long before the last is written', async () => {
    const r = await proxied('/stream?n=5&gap=150');
    expect(r.status).toBe(200);
    const reader = r.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now();
    let text = new TextDecoder().decode(first.value);
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      text += new TextDecoder().decode(next.value);
    }
    const lastAt = Date.now();
    expect(text.trim().split('\n')).toHaveLength(5);
    expect(lastAt - firstAt).toBeGreaterThanOrEqual(400);
  });

  it('refuses a body over the limit with 413, declared or chunked', async () => {
    const big = randomBytes(8 * 1024 * 1024 + 10);
    const declared = await proxied('/echo', { method: 'POST', body: big });
    expect(declared.status).toBe(413);
    expect(await declared.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    // A chunked body that grows past the limit.
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 9; i++) controller.enqueue(randomBytes(1024 * 1024));
        controller.close();
      },
    });
    const chunked = await proxied('/slow-upload', { method: 'POST', body: stream, duplex: 'half' });
    expect(chunked.status).toBe(413);
    expect(await chunked.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
  });
});

describe('forwarding headers', () => {
  it("ignores a caller's x-forwarded-* when no proxy is trusted", async () => {
    const r = await proxied('/echo', {
      headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', host: 'chat.example' },
    });
    const echo = (await r.json()) as { headers: Record<string, string> };
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('http');
    expect(echo.headers['x-forwarded-host']).toBeUndefined();
  });

  it("never lets a caller's forwarding headers reach the agent: the families frameworks honour for a path, method, host or port", async () => {
    const forged = {
      'x-forwarded-port': '8443',
      'x-forwarded-prefix': '/admin',
      'x-forwarded-scheme': 'https',
      'x-forwarded-ssl': 'on',
      'x-forwarded-server': 'evil',
      'x-original-url': '/admin',
      'x-rewrite-url': '/admin',
      'x-http-method-override': 'DELETE',
      'x-method-override': 'DELETE',
      'x-http-method': 'DELETE',
      'x-forwarded-uri': '/admin',
      'x-forwarded-path': '/admin',
      'x-host': 'evil.example',
      'x-forwarded-anything-new': '1',
    };
    const r = await proxied('/echo', { headers: forged });
    const echo = (await r.json()) as { headers: Record<string, string> };
    for (const name of Object.keys(forged)) expect(echo.headers[name], name).toBeUndefined();
    expect(Object.keys(echo.headers).filter((h) => h.startsWith('x-forwarded-')).sort()).toEqual(['x-forwarded-for', 'x-forwarded-proto']);
  });

  it('behind a trusted proxy (AGENTGATE_TRUST_PROXY), passes on the client, protocol and host it names', async () => {
    const behind = await startTestApp({ env: { AGENTGATE_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' } });
    try {
      const w = await createWorkspace(behind, [{ name: 'main', address: `${agent.address}/base` }]);
      const beat = await AgentRows.open(behind.database.url);
      await beat.heartbeat(w.agents[0]!.id);
      await beat.close();
      const call = async (headers: Record<string, string>) => {
        const r = await fetch(`${behind.url}/workspaces/${w.id}/conn/echo`, { headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, ...headers } });
        expect(r.status).toBe(200);
        return ((await r.json()) as { headers: Record<string, string> }).headers;
      };
      // The proxy's own Host, when it sets no x-forwarded-host.
      expect((await call({}))['x-forwarded-host']).toBe(new URL(behind.url).host);
      // The client is the first untrusted hop from the right.
      const named = await call({ 'x-forwarded-for': '198.51.100.1, 203.0.113.9, 10.1.2.3', 'x-forwarded-host': 'chat.example', 'x-forwarded-proto': 'https' });
      expect(named['x-forwarded-for']).toBe('203.0.113.9');
      expect(named['x-forwarded-host']).toBe('chat.example');
      expect(named['x-forwarded-proto']).toBe('https');
    } finally {
      await behind.close();
    }
  });
});

describe('paths', () => {
  it.each([
    '/../tokens',
    '/a/../../tokens',
    '/%2e%2e/tokens',
    '/%2E%2E/x',
    '/.%2e/x',
    '/%252e%252e/x',
    '/a/%2f/b',
    '/a%2Fb',
    '/a%252fb',
    '/a%5cb',
    '/a\\b',
    '/a//b',
    '/..;/x',
    '/.;/x',
    '/./x',
    '/%00',
  ])('refuses %s with INVALID_REQUEST and never reaches the agent', async (path) => {
    const before = agent.records.length;
    const r = await rawRequest(`/workspaces/${ws.id}/conn${path}`);
    expect([400, 404]).toContain(r.status);
    expect(agent.records.length).toBe(before);
  });

  it('dot-segment paths through the router answer INVALID_REQUEST', async () => {
    const r = await rawRequest(`/workspaces/${ws.id}/conn/%2e%2e/%2e%2e/tokens`);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it.each(['/echo#frag', '/echo/a#/../../tokens', '/echo?x=1#frag', '/echo#'])(
    'refuses the fragment in %s with INVALID_REQUEST and never reaches the agent',
    async (path) => {
      const before = agent.records.length;
      const r = await rawRequest(`/workspaces/${ws.id}/conn${path}`);
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body)).toMatchObject({ code: 'INVALID_REQUEST' });
      expect(agent.records.length).toBe(before);
    },
  );

  it('forwards the trailing-slash root and keeps encoded characters as sent', async () => {
    const r = await proxied('/echo/a%20b/c%3Fd');
    const echo = (await r.json()) as { url: string };
    expect(echo.url).toBe('/base/echo/a%20b/c%3Fd');
    const root = await proxied('/');
    expect(root.status).toBe(200);
    expect(((await root.json()) as { url: string }).url).toBe('/base/');
  });

  it('an absolute-form target is read once: routed, authorized, logged and forwarded as the same workspace and path', async () => {
    // Its authority names a second workspace: a parse of the raw target that took the segment
    // after `//` for the workspace sent the call there, with the first one's path.
    const other = await startEchoAgent();
    try {
      const b = await createWorkspace(t, [{ name: 'main', address: other.address }]);
      await rows.heartbeat(b.agents[0]!.id);
      const r = await rawRequest(`http://${b.id}/workspaces/${ws.id.toUpperCase()}/conn/echo/abs?q=1`);
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body.replace(/^[0-9a-f]+\r\n/, '').replace(/\r\n0\r\n\r\n$/, '')) as { url: string }).url).toBe('/base/echo/abs?q=1');
      expect(other.records.filter((rec) => rec.url.includes('/conn/'))).toEqual([]);
      const line = t.logs.map((l) => JSON.parse(l) as { url?: string; workspaceId?: string }).find((l) => l.url?.includes('/echo/abs'));
      expect(line).toMatchObject({ workspaceId: ws.id });
    } finally {
      await other.close();
    }
  });

  it('refuses conflicting agent selectors', async () => {
    const r = await proxied('/echo?agent=main', { headers: { 'x-agentgate-agent': 'other' } });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    const same = await proxied('/echo?agent=main', { headers: { 'x-agentgate-agent': 'main' } });
    expect(same.status).toBe(200);
    const missing = await proxied('/echo', { headers: { 'x-agentgate-agent': 'nope' } });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'AGENT_NOT_FOUND' });
  });
});

describe('aborts and failures', () => {
  /** Resolves once the agent has received a request to `path`. */
  const reached = (path: string) => eventually(() => agent.records.some((r) => r.url.includes(path)), 5_000, `${path} reaching the agent`);

  it('caller abort before the agent answers cancels the agent request at once', async () => {
    const controller = new AbortController();
    const p = proxied('/hang?case=before', { signal: controller.signal }).catch(() => undefined);
    await reached('/hang?case=before');
    const abortAt = Date.now();
    controller.abort();
    const record = await agent.waitAborted('/hang?case=before');
    await p;
    expect(record.abortedAt! - abortAt).toBeLessThan(100);
  });

  it('caller abort mid-response cancels the agent request at once', async () => {
    const controller = new AbortController();
    const r = await proxied('/stream?n=50&gap=50&case=mid', { signal: controller.signal });
    const reader = r.body!.getReader();
    expect((await reader.read()).done).toBe(false); // the response has begun
    const abortAt = Date.now();
    controller.abort();
    const record = await agent.waitAborted('/stream?n=50&gap=50&case=mid');
    await reader.read().catch(() => undefined);
    expect(record.abortedAt! - abortAt).toBeLessThan(100);
  });

  it('caller abort during the upload cancels the agent request at once', async () => {
    const controller = new AbortController();
    const url = new URL(`${t.url}/workspaces/${ws.id}/conn/slow-upload?case=upload`);
    const req = http.request(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'transfer-encoding': 'chunked' },
      signal: controller.signal,
    });
    req.on('error', () => undefined);
    req.write(randomBytes(1024));
    await eventually(
      () => agent.records.some((r) => r.url.includes('/slow-upload?case=upload') && r.bodyBytes > 0),
      5_000,
      'the upload reaching the agent',
    );
    const abortAt = Date.now();
    controller.abort();
    const record = await agent.waitAborted('/slow-upload?case=upload');
    expect(record.abortedAt! - abortAt).toBeLessThan(100);
  });

  it('no response headers in time → 504 AGENT_RESPONSE_TIMEOUT and the agent request cancelled', async () => {
    const started = Date.now();
    const r = await proxied('/hang?case=timeout');
    expect(r.status).toBe(504);
    expect(await r.json()).toMatchObject({ code: 'AGENT_RESPONSE_TIMEOUT', retryable: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    await agent.waitAborted('/hang?case=timeout');
    // An agent silent on a request leaves its connection suspect (the MCP front door's rule
    // too): the next call dials afresh.
    const checks = agent.healthChecks();
    expect((await proxied('/echo')).status).toBe(200);
    expect(agent.healthChecks()).toBe(checks + 1);
  });

  it('agent crash before the response → 502 AGENT_CONNECTION_LOST; the next call dials again', async () => {
    // A cached connection to start from (a test before may have left it suspect).
    expect((await proxied('/echo')).status).toBe(200);
    const checks = agent.healthChecks();
    const r = await proxied('/crash-before', { method: 'POST', body: 'side effects' });
    expect(r.status).toBe(502);
    const body = (await r.json()) as { hint: string };
    expect(body).toMatchObject({ code: 'AGENT_CONNECTION_LOST', retryable: true });
    expect(body.hint).not.toMatch(/restart/i);
    // Never retried: a tool call may have side effects.
    expect(agent.records.filter((x) => x.url === '/base/crash-before')).toHaveLength(1);
    expect((await proxied('/echo')).status).toBe(200);
    expect(agent.healthChecks()).toBe(checks + 1);
  });

  it.each([1_000, 100_000, 1_000_000])(
    'agent crash before the response, while a %i-byte body is still uploading → 502 AGENT_CONNECTION_LOST, never a dropped caller',
    async (size) => {
      for (let i = 0; i < 5; i += 1) {
        const r = await proxied('/crash-before', { method: 'POST', body: 'x'.repeat(size) });
        expect(r.status).toBe(502);
        expect(await r.json()).toMatchObject({ code: 'AGENT_CONNECTION_LOST' });
      }
    },
  );

  it('agent crash after the response began → the caller sees an incomplete response', async () => {
    const r = await proxied('/crash-after');
    expect(r.status).toBe(200);
    await expect(r.text()).rejects.toThrow();
  });

  it('a disconnected agent is refused with the sentinel and never contacted', async () => {
    const other = await startEchoAgent();
    try {
      const w = await createWorkspace(t, [{ address: other.address }]);
      await rows.heartbeat(w.agents[0]!.id, 2_000);
      await rows.goodbye(w.agents[0]!.id);
      const r = await fetch(`${t.url}/workspaces/${w.id}/conn/echo`, { method: 'POST', body: 'x', headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}` } });
      expect(r.status).toBe(409);
      expect(r.headers.get('content-type')).toMatch(/problem\+json/);
      expect(r.headers.get('x-agentgate-upstream')).toBeNull();
      expect(await r.json()).toMatchObject({ code: 'AGENT_DISCONNECTED' });
      expect(other.requests).toEqual([]);
    } finally {
      await other.close();
    }
  });
});

describe('h2c upgrade requests (served as HTTP/1.1, never without their bodies)', () => {
  /** One raw request with `Upgrade: h2c`, as `curl --http2` sends over http:. */
  function h2cRequest(method: string, path: string, body?: string, chunked = false): Promise<{ status: number; head: string; body: string }> {
    return new Promise((resolve, reject) => {
      const url = new URL(t.url);
      const socket = net.connect(Number(url.port), url.hostname, () => {
        const length = body === undefined ? '' : chunked ? 'Transfer-Encoding: chunked\r\n' : `Content-Length: ${Buffer.byteLength(body)}\r\n`;
        const payload = body === undefined ? '' : chunked ? `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n` : body;
        socket.write(
          `${method} ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${ENV_ADMIN_TOKEN}\r\n` +
            `Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n${length}\r\n${payload}`,
        );
      });
      let data = '';
      socket.on('data', (c: Buffer) => (data += c.toString()));
      socket.on('end', () => {
        const [head = '', ...rest] = data.split('\r\n\r\n');
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: rest.join('\r\n\r\n') });
      });
      socket.on('error', reject);
    });
  }

  it.each([false, true])('a POST with a body (chunked: %s) is refused with INVALID_REQUEST, and nothing reaches the agent', async (chunked) => {
    const before = agent.records.length;
    const r = await h2cRequest('POST', `/workspaces/${ws.id}/conn/echo/h2c`, '{"command":"ls"}', chunked);
    expect(r.status).toBe(400);
    expect(r.head.toLowerCase()).toContain('content-type: application/problem+json');
    expect(JSON.parse(r.body)).toMatchObject({ code: 'INVALID_REQUEST', status: 400 });
    expect(agent.records.length).toBe(before);
  });

  it('a GET without a body is served as the plain request it also is', async () => {
    const r = await h2cRequest('GET', `/workspaces/${ws.id}/conn/echo/h2c?x=1`);
    expect(r.status).toBe(200);
    expect(r.head.toLowerCase()).toContain('x-agentgate-upstream: agent');
  });
});
