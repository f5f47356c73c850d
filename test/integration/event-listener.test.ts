// The LISTEN connection survives PostgreSQL going away: it reconnects with backoff, without
// crashing the process, and events flow again afterwards (SPEC 5 step 13).
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startAppBehindFaultProxy, type AppBehindProxy, type TestApp } from '../support/app.js';
import type { TestDatabase } from '../support/database.js';
import { eventually } from '../support/eventually.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { EventListener, EVENTS_CHANNEL } from '../../src/db/events.js';
import type { GateEvent } from '../../src/domain/events.js';
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
