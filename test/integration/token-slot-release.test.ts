// A caller who leaves while its token is still being looked up holds no slot afterwards: the
// response's close came before the slot was taken, and must not leave it taken for ever.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startAppBehindFaultProxy, type AppBehindProxy } from '../support/app.js';
import { eventually } from '../support/eventually.js';

let env: AppBehindProxy;
beforeAll(async () => {
  env = await startAppBehindFaultProxy({}, { maxEventLoopDelayMs: 0 });
});
afterAll(async () => {
  await env?.close();
});

it('a caller gone during its token lookup leaves no slot held', async () => {
  const { t, proxy } = env;
  const created = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'slow', scope: 'admin' } });
  expect(created.status).toBe(201);
  const principal = { kind: 'admin', tokenId: created.body.id as string } as const;
  // Every database answer now takes 300 ms: the uncached token's lookup is slow.
  proxy.setMode('latency', { latencyMs: 300 });
  try {
    const leaving = new AbortController();
    const call = fetch(`${t.url}/workspaces/00000000-0000-4000-8000-000000000000`, {
      headers: { authorization: `Bearer ${created.body.token as string}` },
      signal: leaving.signal,
    }).catch(() => undefined);
    setTimeout(() => leaving.abort(), 100); // while the lookup waits on the database
    await call;
    // The lookup ends later, with its caller gone; then no slot may stay taken.
    await new Promise((resolve) => setTimeout(resolve, 600)); // past the lookup: that is the case under test
    await eventually(() => t.app.concurrency.held('request', principal) === 0, 2_000, 'the slot to be free');
  } finally {
    proxy.setMode('pass');
  }
});
