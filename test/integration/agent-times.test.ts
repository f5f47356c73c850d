// The watch over running MCP calls reads its agents in one query: their times and whether each
// is still its workspace's current agent. Against a real PostgreSQL: a rebuild, a stop and a
// deletion each make an agent no longer current; an unknown id is absent.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { AgentRows, createWorkspace, startBuild } from '../support/gate-fixtures.js';
import { readAgentTimes } from '../../src/db/agent-times.js';

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(async () => {
  await t?.close();
});

it('reads times and currency for many agents at once, with the database clock', async () => {
  const address = 'http://127.0.0.1:9';
  const rebuilt = await createWorkspace(t, [{ name: 'main', address }]);
  const [successor] = await startBuild(t, rebuilt.id, [{ name: 'main', address }]);
  const stopped = await createWorkspace(t, [{ name: 'main', address }]);
  expect((await t.call('POST', `/workspaces/${stopped.id}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } })).status).toBe(201);
  const deleted = await createWorkspace(t, [{ name: 'main', address }]);
  expect((await t.call('DELETE', `/workspaces/${deleted.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
  const live = await createWorkspace(t, [{ name: 'main', address }]);
  await AgentRows.heartbeatOnce(t.database.url, live.agents[0]!.id);
  const unknown = randomUUID();

  const before = Date.now();
  const read = await readAgentTimes(t.app.db, [rebuilt.agents[0]!.id, successor!.id, stopped.agents[0]!.id, deleted.agents[0]!.id, live.agents[0]!.id, unknown]);
  expect(Math.abs(read.nowMs - before)).toBeLessThan(5_000);
  const current = (id: string) => read.agents.get(id)?.current;
  expect(current(rebuilt.agents[0]!.id)).toBe(false);
  expect(current(successor!.id)).toBe(true);
  expect(current(stopped.agents[0]!.id)).toBe(false);
  expect(current(deleted.agents[0]!.id)).toBe(false);
  expect(current(live.agents[0]!.id)).toBe(true);
  expect(read.agents.has(unknown)).toBe(false);
  expect(read.agents.size).toBe(5);
  const times = read.agents.get(live.agents[0]!.id)!.times;
  expect(times.firstConnectedAt).not.toBeNull();
  expect(times.lastConnectedAt).toBeGreaterThan(read.nowMs - 5_000);
  expect(read.agents.get(successor!.id)!.times.firstConnectedAt).toBeNull();

  // None at all: the clock alone.
  const none = await readAgentTimes(t.app.db, [unknown]);
  expect(none.agents.size).toBe(0);
  expect(Number.isFinite(none.nowMs)).toBe(true);
});
