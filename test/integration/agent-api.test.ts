import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { eventually } from '../support/eventually.js';
import { EVENTS_CHANNEL, parseEvent } from '../../src/db/events.js';
import type { GateEvent } from '../../src/domain/events.js';

let t: TestApp;
let listener: pg.Client;
const received: GateEvent[] = [];
/** A channel of the test's own, for markers that tell when notifications have all arrived. */
const MARKER_CHANNEL = 'agentgate_test_marker';
const markers = new Set<string>();

beforeAll(async () => {
  t = await startTestApp();
  // A second, independent connection LISTENs like another replica would.
  listener = new pg.Client({ connectionString: t.database.url });
  await listener.connect();
  listener.on('notification', (m) => {
    if (m.channel === MARKER_CHANNEL) return void markers.add(m.payload ?? '');
    const event = parseEvent(m.payload);
    if (event) received.push(event);
  });
  await listener.query(`listen ${EVENTS_CHANNEL}`);
  await listener.query(`listen ${MARKER_CHANNEL}`);
});
afterAll(async () => {
  await listener.end();
  await t.close();
});

interface Agent {
  id: string;
  token: string;
  workspaceId: string;
}

async function newAgent(): Promise<Agent> {
  const workspaceId = randomUUID();
  await t.call('PUT', `/workspaces/${workspaceId}`, { token: ENV_ADMIN_TOKEN, body: { ownerId: randomUUID(), name: 'w' } });
  const build = await t.call('POST', `/workspaces/${workspaceId}/builds`, {
    token: ENV_ADMIN_TOKEN,
    body: { transition: 'start', agents: [{ name: 'main', address: 'http://127.0.0.1:1' }] },
  });
  expect(build.status).toBe(201);
  return { id: build.body.agents[0].id, token: build.body.agents[0].token, workspaceId };
}

interface Row {
  first_connected_at: Date | null;
  last_connected_at: Date | null;
  disconnected_at: Date | null;
  db_now: Date;
}

async function row(agentId: string): Promise<Row> {
  const { rows } = await listener.query<Row>(
    'select first_connected_at, last_connected_at, disconnected_at, now() as db_now from workspace_agents where id = $1',
    [agentId],
  );
  const r = rows[0];
  if (!r) throw new Error('agent row missing');
  return r;
}

/**
 * Resolves once every notification committed so far has reached the listener: PostgreSQL
 * delivers notifications in commit order, so a marker sent now arrives after all of them.
 */
async function notificationsArrived(): Promise<void> {
  const marker = randomUUID();
  await listener.query('select pg_notify($1, $2)', [MARKER_CHANNEL, marker]);
  await eventually(() => markers.has(marker), 5_000, 'the marker notification');
}

/** Events about one agent received so far, every notification already sent included. */
async function eventsFor(agentId: string): Promise<string[]> {
  await notificationsArrived();
  return received.filter((e) => 'agentId' in e && e.agentId === agentId).map((e) => e.kind);
}

const heartbeat = (a: Agent) => t.call('POST', '/agent/heartbeat', { token: a.token });
const goodbye = (a: Agent) => t.call('POST', '/agent/disconnect', { token: a.token });

describe('agent API', () => {
  it('sets first_connected_at once and moves last_connected_at on the database clock', async () => {
    const agent = await newAgent();
    const before = await row(agent.id);
    expect(before.first_connected_at).toBeNull();

    expect((await heartbeat(agent)).status).toBe(204);
    const first = await row(agent.id);
    expect(first.first_connected_at).toBeInstanceOf(Date);
    expect(first.last_connected_at?.getTime()).toBe(first.first_connected_at?.getTime());
    expect(first.last_connected_at!.getTime()).toBeLessThanOrEqual(first.db_now.getTime());
    expect(first.last_connected_at!.getTime()).toBeGreaterThanOrEqual(before.db_now.getTime());

    // The next heartbeat must be written at a later database time.
    await eventually(async () => (await row(agent.id)).db_now.getTime() > first.last_connected_at!.getTime(), 5_000, 'the database clock moving on');
    expect((await heartbeat(agent)).status).toBe(204);
    const second = await row(agent.id);
    expect(second.first_connected_at?.getTime()).toBe(first.first_connected_at?.getTime());
    expect(second.last_connected_at!.getTime()).toBeGreaterThan(first.last_connected_at!.getTime());
    expect(second.last_connected_at!.getTime()).toBeLessThanOrEqual(second.db_now.getTime());

    const status = await t.call('GET', `/workspaces/${agent.workspaceId}`, { token: ENV_ADMIN_TOKEN });
    expect(status.body.agents[0]).toMatchObject({ status: 'connected', disconnectedAt: null });
  });

  it('goodbye sets disconnected_at; a heartbeat after it reconnects', async () => {
    const agent = await newAgent();
    await heartbeat(agent);
    expect((await goodbye(agent)).status).toBe(204);
    const gone = await row(agent.id);
    expect(gone.disconnected_at).toBeInstanceOf(Date);
    expect(gone.disconnected_at!.getTime()).toBeGreaterThanOrEqual(gone.last_connected_at!.getTime());
    let status = await t.call('GET', `/workspaces/${agent.workspaceId}`, { token: ENV_ADMIN_TOKEN });
    expect(status.body.agents[0]).toMatchObject({ status: 'disconnected', disconnectedAt: gone.disconnected_at!.toISOString() });

    expect((await heartbeat(agent)).status).toBe(204);
    const back = await row(agent.id);
    expect(back.last_connected_at!.getTime()).toBeGreaterThan(back.disconnected_at!.getTime());
    status = await t.call('GET', `/workspaces/${agent.workspaceId}`, { token: ENV_ADMIN_TOKEN });
    expect(status.body.agents[0].status).toBe('connected');
  });

  it('publishes a NOTIFY for each transition and none for plain heartbeats', async () => {
    const agent = await newAgent();
    expect(await eventsFor(agent.id)).toEqual([]);
    await heartbeat(agent);
    expect(await eventsFor(agent.id)).toEqual(['agent_connected']);
    await heartbeat(agent);
    await heartbeat(agent);
    expect(await eventsFor(agent.id)).toEqual(['agent_connected']);
    await goodbye(agent);
    expect(await eventsFor(agent.id)).toEqual(['agent_connected', 'agent_disconnected']);
    await heartbeat(agent);
    await heartbeat(agent);
    expect(await eventsFor(agent.id)).toEqual(['agent_connected', 'agent_disconnected', 'agent_reconnected']);
    const all = received.filter((e) => 'agentId' in e && e.agentId === agent.id);
    for (const e of all) expect(e).toMatchObject({ workspaceId: agent.workspaceId, agentId: agent.id });
  });

  it('publishes new builds and deleted workspaces', async () => {
    const agent = await newAgent();
    await notificationsArrived();
    const kinds = () => received.filter((e) => 'workspaceId' in e && e.workspaceId === agent.workspaceId).map((e) => e.kind);
    expect(kinds()).toContain('build_created');
    const stop = await t.call('POST', `/workspaces/${agent.workspaceId}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } });
    expect(stop.status).toBe(201);
    await t.call('DELETE', `/workspaces/${agent.workspaceId}`, { token: ENV_ADMIN_TOKEN });
    await notificationsArrived();
    expect(kinds().filter((k) => k === 'build_created')).toHaveLength(2);
    expect(kinds()).toContain('workspace_deleted');
  });

  it('a rolled-back change publishes nothing', async () => {
    // NOTIFY is transactional: the event of a failed build (unknown workspace) never arrives.
    const count = received.length;
    const missing = randomUUID();
    const reply = await t.call('POST', `/workspaces/${missing}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } });
    expect(reply.status).toBe(404);
    await notificationsArrived();
    expect(received.slice(count).filter((e) => 'workspaceId' in e && e.workspaceId === missing)).toEqual([]);
  });

  it('agents of superseded builds may still report', async () => {
    const agent = await newAgent();
    const next = await t.call('POST', `/workspaces/${agent.workspaceId}/builds`, {
      token: ENV_ADMIN_TOKEN,
      body: { transition: 'start', agents: [{ name: 'main', address: 'http://127.0.0.1:2' }] },
    });
    expect(next.status).toBe(201);
    expect((await heartbeat(agent)).status).toBe(204);
    expect((await row(agent.id)).last_connected_at).toBeInstanceOf(Date);
  });

  it('a workspace deleted straight in the tables (no notification) stops its agent tokens at once (contract §4.3)', async () => {
    const agent = await newAgent();
    // The first heartbeat leaves the token's principal in the cache.
    expect((await heartbeat(agent)).status).toBe(204);
    const before = await row(agent.id);
    await listener.query('update workspaces set deleted_at = now() where id = $1', [agent.workspaceId]);
    const refused = await heartbeat(agent);
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ code: 'UNAUTHENTICATED' });
    const bye = await goodbye(agent);
    expect(bye.status).toBe(401);
    expect(bye.body).toMatchObject({ code: 'UNAUTHENTICATED' });
    const after = await row(agent.id);
    expect(after.last_connected_at).toEqual(before.last_connected_at);
    expect(after.disconnected_at).toBeNull();
  });
});
