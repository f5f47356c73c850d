// The decision matrix of POST /workspaces/:id/conn and GET /workspaces/:id/agent (contract §3, 4.1, 5),
// against real agents on real sockets.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { agentFixtures } from '../support/agents.js';
import { AgentRows, agentStatus, conn, createWorkspace, startBuild } from '../support/gate-fixtures.js';
import { checkGateSignature } from '../support/signature.js';

let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };
const { agent } = agentFixtures();

// Inactive timeout 1 s and grace 5 s: a silence of 2 s is weak, one of 10 s is strong.
beforeAll(async () => {
  t = await startTestApp({
    env: {
      AGENTGATE_INACTIVE_TIMEOUT_MS: '1000',
      AGENTGATE_DISCONNECT_GRACE_MS: '5000',
      AGENTGATE_DIAL_TIMEOUT_MS: '500',
      AGENTGATE_DIAL_BACKOFF_MS: '2000',
    },
  });
  rows = await AgentRows.open(t.database.url);
});
afterAll(async () => {
  await rows.close();
  await t.close();
});

function expectSentinel(r: { status: number; headers: Headers; body: Record<string, unknown> }, status: number, code: string) {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(r.body).toMatchObject({ code, status });
  expect(typeof r.body.hint).toBe('string');
}

describe('strong signals answer at once without dialing', () => {
  it('goodbye → AGENT_DISCONNECTED, no request reaches the agent', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id, 3_000);
    await rows.goodbye(ws.agents[0]!.id, 2_000);
    const r = await conn(t, ws.id);
    expectSentinel(r, 409, 'AGENT_DISCONNECTED');
    expect(r.body).toMatchObject({ workspaceId: ws.id, agentId: ws.agents[0]!.id, agentStatus: 'disconnected', retryable: false });
    expect(r.body.disconnectedSeconds).toBe(2);
    expect(r.body.hint).toMatch(/restart/i);
    expect(a.requests).toEqual([]);
  });

  it('equal goodbye and last-connect timestamps count as disconnected', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    await rows.equalGoodbye(ws.agents[0]!.id);
    expectSentinel(await conn(t, ws.id), 409, 'AGENT_DISCONNECTED');
    expect(a.requests).toEqual([]);
  });

  it('silence past the grace → AGENT_DISCONNECTED with disconnectedSeconds from last_connected_at', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id, 10_000);
    const r = await conn(t, ws.id);
    expectSentinel(r, 409, 'AGENT_DISCONNECTED');
    expect(r.body.disconnectedSeconds).toBe(10);
    expect(a.requests).toEqual([]);
  });

  it('never connected past its connection timeout → AGENT_NEVER_CONNECTED', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address, connectionTimeoutSeconds: 60 }]);
    await rows.set(ws.agents[0]!.id, { createdAgoMs: 61_000, firstAgoMs: null, lastAgoMs: null, discAgoMs: null });
    const r = await conn(t, ws.id);
    expectSentinel(r, 409, 'AGENT_NEVER_CONNECTED');
    expect(r.body).toMatchObject({ agentStatus: 'timeout' });
    expect(r.body.hint).toMatch(/restart/i);
    expect(a.requests).toEqual([]);
  });

  it('closes the cached connection: the agent sees its socket close', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    expect((await conn(t, ws.id)).status).toBe(200);
    expect(a.sockets.opened).toBe(1);
    await rows.goodbye(ws.agents[0]!.id);
    expectSentinel(await conn(t, ws.id), 409, 'AGENT_DISCONNECTED');
    await a.sockets.waitClosed(1);
    expect(a.healthChecks()).toBe(1);
  });
});

describe('connected and connecting agents', () => {
  it('dials once, then serves from the cache', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    const first = await conn(t, ws.id);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      workspaceId: ws.id,
      agent: { id: ws.agents[0]!.id, name: 'agent0', status: 'connected', disconnectedAt: null },
      connection: { cached: false },
    });
    expect(Date.parse(first.body.connection.dialedAt)).not.toBeNaN();
    expect(Number.isInteger(first.body.connection.dialMs)).toBe(true);
    const second = await conn(t, ws.id);
    expect(second.status).toBe(200);
    expect(second.body.connection).toMatchObject({ cached: true, dialedAt: first.body.connection.dialedAt });
    expect(a.healthChecks()).toBe(1);
  });

  it('signs the health check for the agent with the gate key and forwards no credentials', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: `${a.address}/base/` }]);
    await rows.heartbeat(ws.agents[0]!.id);
    expect((await conn(t, ws.id)).status).toBe(200);
    const req = a.requests[0]!;
    expect(req.url).toBe('/base/health');
    expect(req.headers.authorization).toBeUndefined();
    const header = req.headers['x-agentgate-auth'] as string;
    expect(header).toMatch(/^v2\./);
    expect(checkGateSignature(t.app.signingKey, header, ws.agents[0]!.id, 'GET', '/base/health')).toBe('ok');
    // Made for this agent only.
    expect(checkGateSignature(t.app.signingKey, header, '00000000-0000-4000-8000-000000000000', 'GET', '/base/health')).toBe('mismatch');
  });

  it.each([
    ['fresh', 120, 1_000],
    ['with connection timeout 0, long after creation', 0, 3_600_000],
  ])('a connecting agent (%s) is dialed', async (_label, timeout, createdAgo) => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address, connectionTimeoutSeconds: timeout }]);
    await rows.set(ws.agents[0]!.id, { createdAgoMs: createdAgo, firstAgoMs: null, lastAgoMs: null, discAgoMs: null });
    const r = await conn(t, ws.id);
    expect(r.status).toBe(200);
    expect(r.body.agent).toMatchObject({ status: 'connecting', firstConnectedAt: null, lastConnectedAt: null });
    expect(a.healthChecks()).toBe(1);
  });

  it('the stale-cache false positive cannot happen: a heartbeating agent stays usable past the inactive timeout', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    expect((await conn(t, ws.id)).body.connection.cached).toBe(false);
    // More than the inactive timeout (1 s) passes while the agent keeps heartbeating.
    for (let i = 0; i < 3; i++) {
      // Time passing is what is tested: heartbeats 600 ms apart, past the timeout in total.
      await new Promise((r) => setTimeout(r, 600));
      await rows.heartbeat(ws.agents[0]!.id);
    }
    const r = await conn(t, ws.id);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ agent: { status: 'connected' }, connection: { cached: true } });
    expect(a.healthChecks()).toBe(1);
    expect(a.sockets.closed).toBe(0);
  });
});

describe('weak signals are confirmed by a dial', () => {
  it('silence under the grace: a fresh dial decides, even with a cached connection', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    expect((await conn(t, ws.id)).status).toBe(200);
    await rows.heartbeat(ws.agents[0]!.id, 2_000);
    const r = await conn(t, ws.id);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ agent: { status: 'disconnected' }, connection: { cached: false } });
    expect(a.healthChecks()).toBe(2);
  });

  it('silence under the grace with a dead agent: the dial sentinel, with agentStatus disconnected', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    await rows.heartbeat(ws.agents[0]!.id, 2_000);
    await a.close();
    const r = await conn(t, ws.id);
    expectSentinel(r, 502, 'AGENT_UNREACHABLE');
    expect(r.body).toMatchObject({ agentStatus: 'disconnected', disconnectedSeconds: 2, retryable: true });
    expect(r.body.hint).not.toMatch(/restart|stop/i);
  });

  it('a grace of 0 makes every disconnect strong', async () => {
    const strict = await startTestApp({
      database: t.database,
      env: { AGENTGATE_INACTIVE_TIMEOUT_MS: '1000', AGENTGATE_DISCONNECT_GRACE_MS: '0' },
    });
    try {
      const a = await agent();
      const ws = await createWorkspace(strict, [{ address: a.address }]);
      await rows.heartbeat(ws.agents[0]!.id, 1_500);
      expectSentinel(await conn(strict, ws.id), 409, 'AGENT_DISCONNECTED');
      expect(a.requests).toEqual([]);
    } finally {
      await strict.close();
    }
  });
});

describe('workspaces without a usable agent', () => {
  it('unknown and deleted workspaces → WORKSPACE_NOT_FOUND', async () => {
    expectSentinel(await conn(t, randomUUID()), 404, 'WORKSPACE_NOT_FOUND');
    const ws = await createWorkspace(t, []);
    await t.call('DELETE', `/workspaces/${ws.id}`, { token: ENV_ADMIN_TOKEN });
    expectSentinel(await conn(t, ws.id), 404, 'WORKSPACE_NOT_FOUND');
    expectSentinel(await agentStatus(t, ws.id), 404, 'WORKSPACE_NOT_FOUND');
  });

  it('no build, a stop build, or a start build without agents → WORKSPACE_HAS_NO_AGENT with a start hint', async () => {
    const ws = await createWorkspace(t, []);
    let r = await conn(t, ws.id);
    expectSentinel(r, 409, 'WORKSPACE_HAS_NO_AGENT');
    expect(r.body.hint).toMatch(/start/i);
    const a = await agent();
    await startBuild(t, ws.id, [{ address: a.address }]);
    await t.call('POST', `/workspaces/${ws.id}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } });
    r = await conn(t, ws.id);
    expectSentinel(r, 409, 'WORKSPACE_HAS_NO_AGENT');
    expectSentinel(await agentStatus(t, ws.id), 409, 'WORKSPACE_HAS_NO_AGENT');
    await t.call('POST', `/workspaces/${ws.id}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'start', agents: [] } });
    expectSentinel(await conn(t, ws.id), 409, 'WORKSPACE_HAS_NO_AGENT');
    expect(a.requests).toEqual([]);
  });

  it('owner-scoped conn tokens see only their owner’s workspaces', async () => {
    const owner = randomUUID();
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }], owner);
    await rows.heartbeat(ws.agents[0]!.id);
    const mine = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'mine', scope: 'conn', ownerId: owner } });
    const other = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'other', scope: 'conn', ownerId: randomUUID() } });
    expect((await conn(t, ws.id, mine.body.token)).status).toBe(200);
    expectSentinel(await conn(t, ws.id, other.body.token), 404, 'WORKSPACE_NOT_FOUND');
    expectSentinel(await agentStatus(t, ws.id, other.body.token), 404, 'WORKSPACE_NOT_FOUND');
    expect((await agentStatus(t, ws.id, mine.body.token)).status).toBe(200);
  });
});

describe('agent selection', () => {
  it('picks the lowest display order, then the lowest name; ?agent= picks by name; unknown names → AGENT_NOT_FOUND', async () => {
    const [x, y, z] = [await agent(), await agent(), await agent()];
    const ws = await createWorkspace(t, [
      { name: 'b', address: x.address, displayOrder: 1 },
      { name: 'a', address: y.address, displayOrder: 1 },
      { name: 'c', address: z.address, displayOrder: 2 },
    ]);
    for (const a of ws.agents) await rows.heartbeat(a.id);
    const picked = await conn(t, ws.id);
    expect(picked.body.agent.name).toBe('a');
    expect(y.healthChecks()).toBe(1);
    const byName = await conn(t, ws.id, ENV_ADMIN_TOKEN, '?agent=c');
    expect(byName.body.agent.name).toBe('c');
    expect(z.healthChecks()).toBe(1);
    expectSentinel(await conn(t, ws.id, ENV_ADMIN_TOKEN, '?agent=nope'), 404, 'AGENT_NOT_FOUND');
    expectSentinel(await agentStatus(t, ws.id, ENV_ADMIN_TOKEN, '?agent=nope'), 404, 'AGENT_NOT_FOUND');
    expect((await agentStatus(t, ws.id, ENV_ADMIN_TOKEN, '?agent=b')).body.agent.name).toBe('b');
    expect(x.requests).toEqual([]);
    const bad = await conn(t, ws.id, ENV_ADMIN_TOKEN, '?agent=has%20space');
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('a rebuild is picked up on the next call', async () => {
    const [old, next] = [await agent(), await agent()];
    const ws = await createWorkspace(t, [{ name: 'main', address: old.address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    expect((await conn(t, ws.id)).body.agent.id).toBe(ws.agents[0]!.id);
    const [fresh] = await startBuild(t, ws.id, [{ name: 'main', address: next.address }]);
    await rows.heartbeat(fresh!.id);
    const r = await conn(t, ws.id);
    expect(r.body).toMatchObject({ agent: { id: fresh!.id }, connection: { cached: false } });
    // The old agent's pool was closed by the build's event.
    await old.sockets.waitClosed(1);
  });
});

describe('GET /workspaces/:id/agent', () => {
  it('reports every status without dialing', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ address: a.address }]);
    expect((await agentStatus(t, ws.id)).body.agent.status).toBe('connecting');
    await rows.heartbeat(ws.agents[0]!.id);
    const connected = await agentStatus(t, ws.id);
    expect(connected.status).toBe(200);
    expect(connected.body).toMatchObject({ workspaceId: ws.id, agent: { id: ws.agents[0]!.id, status: 'connected' } });
    await rows.heartbeat(ws.agents[0]!.id, 2_000);
    const silent = await agentStatus(t, ws.id);
    expect(silent.body.agent.status).toBe('disconnected');
    expect(silent.body.agent.disconnectedAt).toBe(silent.body.agent.lastConnectedAt);
    await rows.goodbye(ws.agents[0]!.id);
    expect((await agentStatus(t, ws.id)).body.agent.status).toBe('disconnected');
    await rows.set(ws.agents[0]!.id, { createdAgoMs: 1_000_000, firstAgoMs: null, lastAgoMs: null, discAgoMs: null });
    expect((await agentStatus(t, ws.id)).body.agent.status).toBe('timeout');
    expect(a.requests).toEqual([]);
  });
});
