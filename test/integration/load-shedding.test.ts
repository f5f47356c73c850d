// When the event loop lags, API calls answer 503 OVERLOADED with Retry-After at once, while the
// operations routes stay served; calls resume by themselves when the lag is gone.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';

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
