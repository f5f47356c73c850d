// AGENTGATE_RATE_LIMIT_PER_MIN: one budget per token over the chat-server routes.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { AGENTGATE_RATE_LIMIT_PER_MIN: '3' } });
});
afterAll(async () => {
  await t.close();
});

it('answers 429 RATE_LIMITED with Retry-After past the budget, per token, on chat routes only', async () => {
  const conn = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'chat', scope: 'conn' } });
  const other = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'chat2', scope: 'conn' } });
  const ws = randomUUID();
  const routes = [
    () => t.call('GET', `/workspaces/${ws}/agent`, { token: conn.body.token }),
    () => t.call('POST', `/workspaces/${ws}/conn`, { token: conn.body.token }),
    () => t.call('GET', `/workspaces/${ws}/conn/x`, { token: conn.body.token }),
  ];
  for (const route of routes) expect((await route()).status).toBe(404);
  const over = await t.call('POST', `/workspaces/${ws}/conn`, { token: conn.body.token });
  expect(over.status).toBe(429);
  expect(over.headers.get('content-type')).toMatch(/problem\+json/);
  expect(over.body).toMatchObject({ code: 'RATE_LIMITED', retryable: true });
  expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
  // Another token has a budget of its own.
  expect((await t.call('GET', `/workspaces/${ws}/agent`, { token: other.body.token })).status).toBe(404);
  // Control and operations routes are not limited.
  for (let i = 0; i < 5; i++) {
    expect((await t.call('GET', `/workspaces/${ws}`, { token: ENV_ADMIN_TOKEN })).status).toBe(404);
    expect((await t.call('GET', '/healthz')).status).toBe(200);
  }
});

it('WebSocket upgrades draw on the same per-token budget', async () => {
  const conn = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'ws', scope: 'conn' } });
  const ws = randomUUID();
  for (let i = 0; i < 3; i++) {
    expect((await t.call('GET', `/workspaces/${ws}/agent`, { token: conn.body.token })).status).toBe(404);
  }
  const status = await new Promise<number>((resolve, reject) => {
    const url = new URL(`/workspaces/${ws}/conn/term`, t.url);
    const req = http.request(url, {
      headers: {
        authorization: `Bearer ${conn.body.token}`,
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      },
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      reject(new Error('upgraded'));
    });
    req.on('error', reject);
    req.end();
  });
  expect(status).toBe(429);
});
