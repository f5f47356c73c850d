// When the event loop lags, API calls answer 503 OVERLOADED with Retry-After at once, while the
// operations routes stay served; calls resume by themselves when the lag is gone.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { eventually } from '../support/eventually.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ maxEventLoopDelayMs: 200 });
});
afterAll(async () => {
  await t.close();
});

function blockEventLoop(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy: nothing else runs
  }
}

it('sheds API calls while the event loop lags, never the operations routes', async () => {
  const path = `/workspaces/${randomUUID()}`;
  expect((await t.call('GET', path, { token: ENV_ADMIN_TOKEN })).status).toBe(404);
  let shed: Awaited<ReturnType<TestApp['call']>> | undefined;
  // The lag is sampled every 500 ms: block, then look until a call is shed (or give up).
  for (let i = 0; i < 10 && !shed; i++) {
    blockEventLoop(600);
    const r = await t.call('GET', path, { token: ENV_ADMIN_TOKEN });
    if (r.status === 503) shed = r;
    else expect(r.status).toBe(404);
  }
  expect(shed?.body).toMatchObject({ code: 'OVERLOADED', retryable: true });
  expect(shed?.headers.get('retry-after')).toBe('1');
  expect((await t.call('GET', '/healthz')).status).toBe(200);
  // Without lag the next samples clear it.
  const deadline = Date.now() + 5_000;
  let status = 503;
  while (status === 503 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    status = (await t.call('GET', path, { token: ENV_ADMIN_TOKEN })).status;
  }
  expect(status).toBe(404);
  expect(t.logs.some((l) => l.includes('"code":"OVERLOADED"'))).toBe(true);
});

it("never sheds an agent's heartbeat: a stalled loop must not make every tenant's agents look gone", async () => {
  const workspaceId = randomUUID();
  expect((await t.call('PUT', `/workspaces/${workspaceId}`, { token: ENV_ADMIN_TOKEN, body: { ownerId: randomUUID(), name: 'shed' } })).status).toBe(201);
  const build = await t.call('POST', `/workspaces/${workspaceId}/builds`, {
    token: ENV_ADMIN_TOKEN,
    body: { transition: 'start', agents: [{ name: 'main', address: 'http://127.0.0.1:9' }] },
  });
  expect(build.status, build.text).toBe(201);
  const agentToken = build.body.agents[0].token as string;
  const path = `/workspaces/${randomUUID()}`;
  let shedApi = false;
  const heartbeats: number[] = [];
  let delaySeen = 0;
  for (let i = 0; i < 10 && !shedApi; i++) {
    blockEventLoop(600);
    // What load shedding decides on is what the gauge shows.
    const scraped = (await t.call('GET', '/metrics')).text;
    const line = scraped.split('\n').find((l) => l.startsWith('agentgate_event_loop_delay_seconds '));
    delaySeen = Math.max(delaySeen, Number(line?.split(' ')[1] ?? 0));
    heartbeats.push((await t.call('POST', '/agent/heartbeat', { token: agentToken })).status);
    shedApi = (await t.call('GET', path, { token: ENV_ADMIN_TOKEN })).status === 503;
  }
  expect(shedApi).toBe(true);
  expect(heartbeats.every((s) => s === 204), heartbeats.join(',')).toBe(true);
  expect(delaySeen).toBeGreaterThan(0.2);
  await eventually(async () => (await t.call('GET', path, { token: ENV_ADMIN_TOKEN })).status === 404, 5_000, 'calls served again');
});

/** A WebSocket upgrade request; the gate's answer when it refuses one. */
function upgrade(path: string): Promise<{ status: number; body: { code?: string } }> {
  return new Promise((resolve, reject) => {
    const req = request(`${t.url}${path}`, {
      headers: { connection: 'Upgrade', upgrade: 'websocket', authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    });
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: {} });
    });
    req.once('response', (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk.toString()));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { code?: string } }));
    });
    req.once('error', reject);
    req.end();
  });
}

it('sheds WebSocket upgrades too: they meet the same admission as other calls', async () => {
  const path = `/workspaces/${randomUUID()}/conn/ws`;
  expect(await upgrade(path)).toMatchObject({ status: 404, body: { code: 'WORKSPACE_NOT_FOUND' } });
  let shed: Awaited<ReturnType<typeof upgrade>> | undefined;
  for (let i = 0; i < 10 && !shed; i++) {
    blockEventLoop(600);
    const r = await upgrade(path);
    if (r.status === 503) shed = r;
    else expect(r.status).toBe(404);
  }
  expect(shed?.body).toMatchObject({ code: 'OVERLOADED' });
});

// Last: its blocks lag the loop that the app above shares.
it('sheds nothing just after start-up: a loop blocked before the first clean sample is start-up, not load', async () => {
  const fresh = await startTestApp({ maxEventLoopDelayMs: 200, loadSheddingGraceMs: 5_000 });
  try {
    const path = `/workspaces/${randomUUID()}`;
    // As start-up work on a busy machine would: the first sampled interval holds only lag.
    blockEventLoop(700);
    expect((await fresh.call('GET', path, { token: ENV_ADMIN_TOKEN })).status).toBe(404);
    blockEventLoop(700);
    expect((await fresh.call('GET', path, { token: ENV_ADMIN_TOKEN })).status).toBe(404);
    expect(fresh.logs.some((l) => l.includes('"code":"OVERLOADED"'))).toBe(false);
  } finally {
    await fresh.close();
  }
});
