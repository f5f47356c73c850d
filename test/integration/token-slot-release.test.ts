// A caller who leaves while its token is still being looked up holds no slot afterwards: the
// response's close came before the slot was taken, and must not leave it taken for ever.
// Each test first shows that the slot was really taken (a count of 0 proves nothing when the slot
// was never counted), then that it is free again.
import http from 'node:http';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import type { Principal } from '../../src/auth/principal.js';
import type { SlotKind } from '../../src/auth/token-concurrency.js';
import { ENV_ADMIN_TOKEN, startAppBehindFaultProxy, type AppBehindProxy, type TestApp } from '../support/app.js';
import { eventually } from '../support/eventually.js';

const NO_SUCH_WORKSPACE = '/workspaces/00000000-0000-4000-8000-000000000000';

let env: AppBehindProxy;
beforeAll(async () => {
  env = await startAppBehindFaultProxy({}, { maxEventLoopDelayMs: 0 });
});
afterAll(async () => {
  await env?.close();
});

/** A new admin token (not yet in the token cache: its first lookup reads the database). */
async function newToken(t: TestApp, name: string): Promise<{ token: string; tokenId: string; principal: Principal }> {
  const created = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name, scope: 'admin' } });
  expect(created.status).toBe(201);
  const tokenId = created.body.id as string;
  return { token: created.body.token as string, tokenId, principal: { kind: 'admin', tokenId } };
}

interface TakenSlot {
  kind: SlotKind;
  /** Whether the caller had already left when the slot was taken. */
  callerGone: boolean;
  /** The principal's count just after the slot was taken. */
  heldAfter: number;
  released: boolean;
  /** Released before anything else could run: the response had closed before the slot was taken. */
  releasedAtOnce: boolean;
}

/** Records every slot the app takes for `tokenId` (through the app's own TokenConcurrency). */
function watchSlots(t: TestApp, tokenId: string, callerGone: () => boolean) {
  const concurrency = t.app.concurrency;
  const acquire = concurrency.acquire.bind(concurrency);
  const taken: TakenSlot[] = [];
  const spy = vi.spyOn(concurrency, 'acquire').mockImplementation((kind, principal) => {
    const release = acquire(kind, principal);
    if (principal.kind !== 'admin' || principal.tokenId !== tokenId) return release;
    const slot: TakenSlot = { kind, callerGone: callerGone(), heldAfter: concurrency.held(kind, principal), released: false, releasedAtOnce: false };
    taken.push(slot);
    // Runs once the code that took the slot has run to its next await: no response event between.
    queueMicrotask(() => (slot.releasedAtOnce = slot.released));
    return () => {
      slot.released = true;
      release();
    };
  });
  return { taken, restore: () => spy.mockRestore() };
}

it('a caller that stays holds its slot while its request is in flight, and frees it at the end', async () => {
  const { t, proxy } = env;
  const { token, tokenId, principal } = await newToken(t, 'staying');
  const slots = watchSlots(t, tokenId, () => false);
  // Every database answer takes 300 ms: the token lookup, then the workspace's read, during which
  // the slot is held.
  proxy.setMode('latency', { latencyMs: 300 });
  try {
    const call = t.call('GET', NO_SUCH_WORKSPACE, { token });
    await eventually(() => t.app.concurrency.held('request', principal) === 1, 2_000, 'the slot to be held during the request');
    expect((await call).status).toBe(404);
    await eventually(() => t.app.concurrency.held('request', principal) === 0, 2_000, 'the slot to be free');
    expect(slots.taken).toEqual([{ kind: 'request', callerGone: false, heldAfter: 1, released: true, releasedAtOnce: false }]);
  } finally {
    slots.restore();
    proxy.setMode('pass');
  }
});

it('a caller gone during its token lookup leaves no slot held', async () => {
  const { t, proxy } = env;
  const { token, tokenId, principal } = await newToken(t, 'slow');
  const leaving = new AbortController();
  const slots = watchSlots(t, tokenId, () => leaving.signal.aborted);
  // Every database answer now takes 300 ms: the uncached token's lookup is slow.
  proxy.setMode('latency', { latencyMs: 300 });
  try {
    // A connection of its own (not one of fetch's kept-alive ones), closed when the caller leaves.
    const call = new Promise<void>((resolve) => {
      const request = http.get(`${t.url}${NO_SUCH_WORKSPACE}`, { agent: false, headers: { authorization: `Bearer ${token}` }, signal: leaving.signal });
      request.on('response', (response) => {
        response.resume();
        resolve();
      });
      request.on('error', () => resolve());
    });
    setTimeout(() => leaving.abort(), 100); // while the lookup waits on the database
    await call;
    // The lookup ends later, with its caller gone, and takes the slot: that is the case under test
    // (a caller still there, or a lookup that never took a slot, would test nothing).
    await eventually(() => slots.taken.length > 0, 2_000, 'the lookup to end and take its slot');
    expect(slots.taken[0]).toMatchObject({ kind: 'request', callerGone: true, heldAfter: 1 });
    // Then no slot may stay taken.
    await eventually(() => t.app.concurrency.held('request', principal) === 0, 2_000, 'the slot to be free');
    expect(slots.taken).toEqual([{ kind: 'request', callerGone: true, heldAfter: 1, released: true, releasedAtOnce: true }]);
  } finally {
    slots.restore();
    proxy.setMode('pass');
  }
});
