// The LISTEN connection survives PostgreSQL going away: it reconnects with backoff, without
// crashing the process, and events flow again afterwards (contract §5 step 13).
import { randomUUID } from 'node:crypto';
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

  const [before, whileAway, after] = [randomUUID(), randomUUID(), randomUUID()];
  await notify(before);
  await eventually(() => events.some((e) => 'workspaceId' in e && e.workspaceId === before));

  proxy.setMode('cut');
  await eventually(() => !t.events.listener.connected);
  // Published while the listener is away: lost, which is why a reconnect resyncs.
  await notify(whileAway);
  const resyncsBefore = resyncs;
  proxy.setMode('pass');
  await eventually(() => t.events.listener.connected && resyncs > resyncsBefore);

  await notify(after);
  await eventually(() => events.some((e) => 'workspaceId' in e && e.workspaceId === after));
  expect(events.some((e) => 'workspaceId' in e && e.workspaceId === whileAway)).toBe(false);
});

it('takes only well-formed transitions, ids made canonical; anything else on the channel is ignored and counted under one label', async () => {
  const events: GateEvent[] = [];
  t.events.hub.onEvent((e) => events.push(e));
  const workspaceId = randomUUID();
  const c = new pg.Client({ connectionString: database.url });
  await c.connect();
  const forged = [
    'not json',
    JSON.stringify({ kind: 'made_up_kind_1', workspaceId }),
    JSON.stringify({ kind: 'made_up_kind_2', workspaceId }),
    JSON.stringify({ kind: 'workspace_deleted', workspaceId: 'not-a-uuid' }),
    JSON.stringify({ kind: 'workspace_deleted' }),
    JSON.stringify({ kind: 'workspace_deleted', workspaceId, extra: 1 }),
    JSON.stringify({ kind: 'token_revoked', tokenId: 42 }),
  ];
  for (const payload of forged) await c.query('select pg_notify($1, $2)', [EVENTS_CHANNEL, payload]);
  await c.query('select pg_notify($1, $2)', [EVENTS_CHANNEL, JSON.stringify({ kind: 'workspace_deleted', workspaceId: workspaceId.toUpperCase() })]);
  await c.end();
  await eventually(() => events.some((e) => 'workspaceId' in e && e.workspaceId === workspaceId), 5_000, 'the well-formed event');
  expect(events.filter((e) => 'workspaceId' in e && e.workspaceId.toLowerCase() === workspaceId)).toEqual([{ kind: 'workspace_deleted', workspaceId }]);
  const text = await t.metrics.registry.metrics();
  expect(text).toMatch(new RegExp(`agentgate_notifications_total\\{kind="unknown"\\} ${forged.length}\\b`));
  expect(text).not.toMatch(/made_up_kind/);
});

it('applies MCP cancels that are rows: a notification on their channel only says to read them, so a forged one cancels nothing', async () => {
  const cancels: CancelNotice[] = [];
  const events: GateEvent[] = [];
  t.events.hub.onCancel((n) => cancels.push(n));
  t.events.hub.onEvent((e) => events.push(e));
  const key = `api:token\u0000ws?agent=\u0000number:${Date.now()}`;
  // Several at once, reasons cut short.
  expect(await publishCancels(t.app.db, [{ key, reason: 'r'.repeat(1_000) }, { key: `${key}-2`, reason: '' }])).toBe(2);
  // Anyone can NOTIFY: what a notification carries is not a cancel, nor a transition.
  const c = new pg.Client({ connectionString: database.url });
  await c.connect();
  await c.query('select pg_notify($1, $2)', [CANCELS_CHANNEL, JSON.stringify({ cancels: [{ key: `${key}-forged`, reason: 'ok' }] })]);
  await c.query('select pg_notify($1, $2)', [CANCELS_CHANNEL, JSON.stringify({ kind: 'workspace_deleted', workspaceId: randomUUID() })]);
  await c.end();
  // A request id too long to carry is left out.
  expect(await publishCancels(t.app.db, [{ key: 'k'.repeat(8_000), reason: '' }])).toBe(0);
  expect(await publishCancels(t.app.db, [{ key: `${key}-last`, reason: '' }, { key: 'k'.repeat(8_000), reason: '' }])).toBe(1);
  await eventually(() => cancels.some((n) => n.key === `${key}-last`));
  expect(cancels).toEqual([
    { key, reason: 'r'.repeat(200) },
    { key: `${key}-2`, reason: '' },
    { key: `${key}-last`, reason: '' },
  ]);
  expect(events).toEqual([]);
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
