// AGENTGATE_RATE_LIMIT_PER_MIN: one budget per token over the chat-server routes.
import { randomUUID } from 'node:crypto';
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
