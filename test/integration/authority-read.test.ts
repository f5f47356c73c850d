// What work in flight rests on, read in one query against a real PostgreSQL: each token
// unrevoked or not, each workspace's owner (none once deleted), each agent's times and whether
// it is still current (a rebuild, a stop and a deletion each make it not), by the database clock.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { AgentRows, createWorkspace, startBuild } from '../support/gate-fixtures.js';
import { readAuthorities } from '../../src/db/authority-read.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

it('reads tokens, owners and agents for many pieces of work at once, in the order asked', async () => {
  const address = 'http://127.0.0.1:9';
  const rebuilt = await createWorkspace(t, [{ name: 'main', address }]);
  const [successor] = await startBuild(t, rebuilt.id, [{ name: 'main', address }]);
  const stopped = await createWorkspace(t, [{ name: 'main', address }]);
  expect((await t.call('POST', `/workspaces/${stopped.id}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } })).status).toBe(201);
  const deleted = await createWorkspace(t, [{ name: 'main', address }]);
  expect((await t.call('DELETE', `/workspaces/${deleted.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
  const live = await createWorkspace(t, [{ name: 'main', address }]);
  await AgentRows.heartbeatOnce(t.database.url, live.agents[0]!.id);
  const token = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'r', scope: 'conn' } });
  const revoked = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'r', scope: 'conn' } });
  expect((await t.call('DELETE', `/tokens/${revoked.body.id as string}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
  const tokenId = token.body.id as string;

  const before = Date.now();
  const read = await readAuthorities(t.app.db, [
    { tokenId, workspaceId: rebuilt.id, agentId: rebuilt.agents[0]!.id },
    { tokenId, workspaceId: rebuilt.id, agentId: successor!.id },
    { tokenId, workspaceId: stopped.id, agentId: stopped.agents[0]!.id },
    { tokenId, workspaceId: deleted.id, agentId: deleted.agents[0]!.id },
    { tokenId: null, workspaceId: live.id, agentId: live.agents[0]!.id },
    { tokenId: revoked.body.id as string, workspaceId: live.id, agentId: undefined },
    { tokenId: randomUUID(), workspaceId: randomUUID(), agentId: randomUUID() },
  ]);
  expect(Math.abs(read.nowMs - before)).toBeLessThan(5_000);
  expect(read.rows.map((r) => r.tokenLive)).toEqual([true, true, true, true, true, false, false]);
  expect(read.rows.map((r) => r.ownerId)).toEqual([rebuilt.ownerId, rebuilt.ownerId, stopped.ownerId, null, live.ownerId, live.ownerId, null]);
  expect(read.rows.map((r) => r.agent?.current)).toEqual([false, true, false, false, true, undefined, undefined]);
  const times = read.rows[4]!.agent!.times;
  expect(times.firstConnectedAt).not.toBeNull();
  expect(times.lastConnectedAt).toBeGreaterThan(read.nowMs - 5_000);
  expect(read.rows[1]!.agent!.times.firstConnectedAt).toBeNull();
});
