// The LISTEN connection survives PostgreSQL going away: it reconnects with backoff, without
// crashing the process, and events flow again afterwards (SPEC 5 step 13).
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startAppBehindFaultProxy, type AppBehindProxy, type TestApp } from '../support/app.js';
import type { TestDatabase } from '../support/database.js';
import { eventually } from '../support/eventually.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { CANCELS_CHANNEL, EventListener, EVENTS_CHANNEL, publishCancels } from '../../src/db/events.js';
import type { CancelNotice, GateEvent } from '../../src/domain/events.js';
import { createLogger } from '../../src/logger.js';

let env: AppBehindProxy;
let database: TestDatabase;
let proxy: FaultProxy;
let t: TestApp;

beforeAll(async () => {
  env = await startAppBehindFaultProxy();
  ({ t, proxy, database } = env);
});
afterAll(async () => {
  await env.close();
});

it('reconnects after the database connection is cut, resyncs, and receives events again', async () => {
  const events: GateEvent[] = [];
  let resyncs = 0;
  t.events.hub.onEvent((e) => events.push(e));
  t.events.hub.onResync(() => (resyncs += 1));
  const notify = async (workspaceId: string) => {
    const c = new pg.Client({ connectionString: database.url });
    await c.connect();
    await c.query('select pg_notify($1, $2)', [EVENTS_CHANNEL, JSON.stringify({ kind: 'workspace_deleted', workspaceId })]);
    await c.end();
  };

  await notify('before');
  await eventually(() => events.some((e) => 'workspaceId' in e && e.workspaceId === 'before'));

  proxy.setMode('cut');
  await eventually(() => !t.events.listener.connected);
  // Published while the listener is away: lost, which is why a reconnect resyncs.
  await notify('while-away');
  const resyncsBefore = resyncs;
  proxy.setMode('pass');
  await eventually(() => t.events.listener.connected && resyncs > resyncsBefore);

  await notify('after');
  await eventually(() => events.some((e) => 'workspaceId' in e && e.workspaceId === 'after'));
  expect(events.some((e) => 'workspaceId' in e && e.workspaceId === 'while-away')).toBe(false);
});

it('carries MCP cancels on a channel of their own: each one reaches the cancel handlers, never the transition handlers', async () => {
  const cancels: CancelNotice[] = [];
  const events: GateEvent[] = [];
  t.events.hub.onCancel((n) => cancels.push(n));
  t.events.hub.onEvent((e) => events.push(e));
  const key = `api:token\u0000ws?agent=\u0000number:${Date.now()}`;
  // Several in one notification, reasons cut short.
  expect(await publishCancels(t.app.db, [{ key, reason: 'r'.repeat(1_000) }, { key: `${key}-2`, reason: '' }])).toBe(2);
  // Malformed ones are dropped; a transition shape on the cancels channel is not a transition.
  const c = new pg.Client({ connectionString: database.url });
  await c.connect();
  await c.query('select pg_notify($1, $2)', [CANCELS_CHANNEL, 'not json']);
  await c.query('select pg_notify($1, $2)', [CANCELS_CHANNEL, JSON.stringify({ kind: 'workspace_deleted', workspaceId: 'w' })]);
  await c.query('select pg_notify($1, $2)', [CANCELS_CHANNEL, JSON.stringify({ cancels: [{ key: 1 }, null, { key: `${key}-3`, reason: 'ok' }] })]);
  await c.end();
  // Request ids too long for one notification are left out (PostgreSQL would refuse it).
  expect(await publishCancels(t.app.db, [{ key: 'k'.repeat(8_000), reason: '' }])).toBe(0);
  expect(await publishCancels(t.app.db, [{ key: `${key}-last`, reason: '' }, { key: 'k'.repeat(8_000), reason: '' }])).toBe(1);
  await eventually(() => cancels.some((n) => n.key === `${key}-last`));
  expect(cancels).toEqual([
    { key, reason: 'r'.repeat(200) },
    { key: `${key}-2`, reason: '' },
    { key: `${key}-3`, reason: 'ok' },
    { key: `${key}-last`, reason: '' },
  ]);
  expect(events.filter((e) => 'workspaceId' in e && e.workspaceId === 'w')).toEqual([]);
});

it('notices a LISTEN connection that died silently (no reset, nothing received) by its probe, then reconnects and resyncs', async () => {
  const listener = new EventListener({
    url: proxy.urlFor(database.url),
    logger: createLogger('silent'),
    probeIntervalMs: 100,
    probeTimeoutMs: 200,
  });
  let resyncs = 0;
  listener.on('resync', () => (resyncs += 1));
  try {
    listener.start();
    await eventually(() => listener.connected && resyncs === 1);
    // Silent: the socket stays open and nothing comes back, as after a peer vanished.
    proxy.setMode('blackhole');
    await eventually(() => !listener.connected, 2_000);
    proxy.setMode('pass');
    await eventually(() => listener.connected && resyncs === 2);
  } finally {
    proxy.setMode('pass');
    await listener.close();
  }
});
