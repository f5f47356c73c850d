// Per-token caps on concurrent work (contract §7: AGENTGATE_MAX_REQUESTS_PER_TOKEN,
// AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN): over a cap, 429 RATE_LIMITED with Retry-After; a slot is
// freed once when its request ends (answered or its socket gone) or its WebSocket closes.
import http from 'node:http';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ENV_ADMIN_TOKEN, startTestApp, type Reply, type TestApp } from '../support/app.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { startWsAgent, type WsAgent } from '../support/ws-agent.js';

let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };
let agent: WsAgent;
let ws: Workspace;
/** A second admin token: its slots are its own. */
let other: string;

beforeAll(async () => {
  t = await startTestApp({ env: { AGENTGATE_MAX_REQUESTS_PER_TOKEN: '2', AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN: '1' }, maxEventLoopDelayMs: 60_000 });
  // A loaded machine may delay the first event-loop samples of a fresh process; wait them out.
  const started = performance.now();
  while ((await probe()).status === 503 && performance.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 100));
  rows = await AgentRows.open(t.database.url);
  agent = await startWsAgent();
  ws = await createWorkspace(t, [{ name: 'main', address: agent.address }]);
  await rows.heartbeat(ws.agents[0]!.id);
  const created = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'other', scope: 'admin' } });
  expect(created.status).toBe(201);
  other = created.body.token as string;
});
afterAll(async () => {
  await rows?.close();
  await agent?.close();
  await t?.close();
});

const ENV_PRINCIPAL = { kind: 'admin', tokenId: 'env' } as const;

/** Waits until the env token holds `n` request slots (requests are parsed when the server gets to them). */
async function held(n: number): Promise<void> {
  const started = performance.now();
  while (t.app.concurrency.held('request', ENV_PRINCIPAL) !== n && performance.now() - started < 2_000) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect(t.app.concurrency.held('request', ENV_PRINCIPAL)).toBe(n);
}

/** A request whose body never finishes arriving: in flight until its socket goes. */
async function hangingRequest(token = ENV_ADMIN_TOKEN): Promise<net.Socket> {
  const url = new URL(t.url);
  const socket = net.connect(Number(url.port), url.hostname);
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.write(
    `POST /tokens HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${token}\r\n` +
      'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"na',
  );
  return socket;
}

const probe = (token = ENV_ADMIN_TOKEN) => t.call('GET', `/workspaces/${randomUUID()}`, { token });

function expectRateLimited(reply: Reply) {
  expect(reply.status).toBe(429);
  expect(reply.body).toMatchObject({ code: 'RATE_LIMITED', status: 429, retryable: true });
  expect(Number(reply.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
}

describe('requests in flight per token', () => {
  it('refuses a token over its cap, frees a slot when a request ends, and counts each once', async () => {
    const hanging = [await hangingRequest()];
    await held(1);
    hanging.push(await hangingRequest());
    await held(2);
    expectRateLimited(await probe());
    // Another token has slots of its own.
    expect((await probe(other)).status).toBe(404);

    // A request whose socket went away frees its slot.
    hanging.shift()!.destroy();
    await held(1);
    expect((await probe()).status).toBe(404);
    // Answered requests free theirs: many in a row, never refused.
    for (let i = 0; i < 10; i++) expect((await probe()).status).toBe(404);

    // Each slot was freed exactly once: two held again fill the cap again.
    await held(1);
    hanging.push(await hangingRequest());
    await held(2);
    expectRateLimited(await probe());
    for (const socket of hanging) socket.destroy();
    await held(0);
    expect((await probe()).status).toBe(404);
  });
});

describe('open WebSockets per token', () => {
  function open(token = ENV_ADMIN_TOKEN): Promise<{ socket: WebSocket } | { status: number; headers: http.IncomingHttpHeaders; body: string }> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(`${t.url.replace(/^http/, 'ws')}/workspaces/${ws.id}/conn/term`, { headers: { authorization: `Bearer ${token}` } });
      socket.on('error', reject);
      socket.once('open', () => resolve({ socket }));
      socket.once('unexpected-response', (_req, res: http.IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
    });
  }

  it('refuses a WebSocket over the cap with RATE_LIMITED and frees the slot when one closes', async () => {
    const first = await open();
    expect('socket' in first).toBe(true);
    const refused = await open();
    expect('status' in refused && refused.status).toBe(429);
    if ('status' in refused) {
      expect(JSON.parse(refused.body)).toMatchObject({ code: 'RATE_LIMITED', retryable: true });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    // HTTP requests and other tokens are counted apart.
    expect((await probe()).status).toBe(404);
    const theirs = await open(other);
    expect('socket' in theirs).toBe(true);

    if ('socket' in first) first.socket.close();
    const started = performance.now();
    let again = await open();
    while (!('socket' in again) && performance.now() - started < 2_000) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      again = await open();
    }
    expect('socket' in again).toBe(true);
    // The refused attempt held nothing: still exactly one open for this token, so one more is refused.
    const over = await open();
    expect('status' in over && over.status).toBe(429);
    expect(t.app.concurrency.held('websocket', ENV_PRINCIPAL)).toBe(1);
    for (const done of [again, theirs]) if ('socket' in done) done.socket.terminate();
    const started2 = performance.now();
    while (t.app.concurrency.held('websocket', ENV_PRINCIPAL) !== 0 && performance.now() - started2 < 2_000) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(t.app.concurrency.held('websocket', ENV_PRINCIPAL)).toBe(0);
  });
});
