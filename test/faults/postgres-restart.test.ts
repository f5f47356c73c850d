// PostgreSQL really restarted (a server of this test's own, so that no other test loses its
// database): calls during the restart answer within the bounds (a degraded 200 on a cached
// connection, DATABASE_UNAVAILABLE otherwise), and the pool and the LISTEN connection come back
// by themselves once it is up again.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../support/app.js';
import { startAgent, type FakeAgent } from '../support/agents.js';
import type { TestDatabase } from '../support/database.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { AgentRows, conn, createWorkspace } from '../support/gate-fixtures.js';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../src/db/embedded.js';
import { migrateUp, withMigrationDatabase } from '../../src/db/migrate.js';
import { callsWithoutKeepAlive, eventually, outcome, timed, UNSHED_MS, WorstCases } from './support.js';

const DB_TIMEOUT_MS = 800;
const DIAL_TIMEOUT_MS = 500;
const SLACK_MS = 400;

let dir: string;
let server: EmbeddedDatabase;
let proxy: FaultProxy;
let t: TestApp;
let agent: FakeAgent;
let databaseUrl: string;
const table = new WorstCases();

/** The embedded server's `agentgate` database, on the given server URL. */
const onDatabase = (serverUrl: string) => {
  const url = new URL(serverUrl);
  url.pathname = '/agentgate';
  return url.toString();
};

beforeAll(async () => {
  callsWithoutKeepAlive();
  dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-restart-'));
  server = await startEmbeddedDatabase({ dataDir: dir });
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  await admin.query('create database agentgate');
  await admin.end();
  databaseUrl = onDatabase(server.url);
  await withMigrationDatabase(databaseUrl, migrateUp);
  proxy = await startFaultProxy('127.0.0.1', server.port);
  const handles: DatabaseHandle[] = [];
  const database: TestDatabase = {
    name: 'agentgate',
    url: databaseUrl,
    serverUrl: server.url,
    open: (options = {}) => {
      const handle = openDatabase({ url: options.url ?? databaseUrl, timeoutMs: options.timeoutMs ?? 2_000, onPoolError: () => undefined });
      handles.push(handle);
      return handle;
    },
    drop: async () => {
      await Promise.all(handles.map((h) => h.close()));
    },
  };
  t = await startTestApp({
    database,
    databaseUrl: proxy.urlFor(databaseUrl),
    env: { AGENTGATE_DB_TIMEOUT_MS: String(DB_TIMEOUT_MS), AGENTGATE_DIAL_TIMEOUT_MS: String(DIAL_TIMEOUT_MS) },
    maxEventLoopDelayMs: UNSHED_MS,
  });
  agent = await startAgent();
}, 120_000);

afterAll(async () => {
  table.print('PostgreSQL restarted: worst-case waits');
  await t?.close();
  await agent?.close();
  await proxy?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

it('PostgreSQL stopped and started again: bounded answers meanwhile, recovery by itself afterwards', async () => {
  const rows = await AgentRows.open(databaseUrl);
  const [cached, uncached] = [await createWorkspace(t, [{ address: agent.address }]), await createWorkspace(t, [{ address: agent.address }])];
  await rows.heartbeat(cached.agents[0]!.id);
  await rows.heartbeat(uncached.agents[0]!.id);
  await rows.close();
  expect((await conn(t, cached.id)).status).toBe(200);

  await server.stop();
  const during = await Promise.all([
    timed(() => conn(t, cached.id)),
    timed(() => conn(t, uncached.id)),
    timed(() => conn(t, cached.id)),
    timed(() => conn(t, uncached.id)),
  ]);
  for (const { r } of during) {
    expect(['ok', '503 DATABASE_UNAVAILABLE'], outcome(r)).toContain(outcome(r));
    if (r.status === 200) expect(r.headers.get('x-agentgate-degraded')).toBe('database');
  }
  expect(during.map(({ r }) => outcome(r))).toContain('ok');
  table.record('PostgreSQL down (stopped)', during, DIAL_TIMEOUT_MS + 2 * DB_TIMEOUT_MS + SLACK_MS);

  // Started again on the same data; the proxy stands for its stable address.
  server = await startEmbeddedDatabase({ dataDir: dir });
  proxy.retarget(server.port);
  const restarted = performance.now();
  await eventually(
    async () => {
      const [a, b] = await Promise.all([conn(t, cached.id), conn(t, uncached.id)]);
      return a.status === 200 && b.status === 200 && a.headers.get('x-agentgate-degraded') === null;
    },
    10_000,
    'calls served fresh once PostgreSQL is back',
  );
  await eventually(() => t.events.listener.connected, 10_000, 'the LISTEN connection back');
  const recovery = Math.round(performance.now() - restarted);
  table.record('PostgreSQL restarted: recovery', [{ r: { status: 200, headers: new Headers(), text: '', body: undefined }, ms: recovery }], 10_000);
}, 60_000);
