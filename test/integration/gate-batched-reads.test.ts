// Reads that arrive together share one query (contract §10: "reads that arrive together may share one
// query"), and each call still gets the answer of its own workspace and agent name, read after
// the call arrived.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type Reply, type TestApp } from '../support/app.js';
import { agentFixtures } from '../support/agents.js';
import { AgentRows, conn, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { CurrentAgentReads } from '../../src/db/gate-read.js';

const { agent } = agentFixtures();
let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };

beforeAll(async () => {
  t = await startTestApp();
  rows = await AgentRows.open(t.database.url);
});
afterAll(async () => {
  await rows?.close();
  await t?.close();
});

const queries = async (): Promise<number> => {
  const text = (await t.call('GET', '/metrics')).text;
  return text
    .split('\n')
    .filter((line) => line.startsWith('agentgate_db_query_seconds_count'))
    .reduce((sum, line) => sum + Number(line.split(' ').pop()), 0);
};

describe('batched gate reads', () => {
  it('many concurrent calls on different workspaces and agent names: each gets its own answer', async () => {
    const a = await agent();
    const connected: Workspace[] = [];
    const gone: Workspace[] = [];
    for (let i = 0; i < 8; i++) {
      const ws = await createWorkspace(t, [{ name: 'main', address: a.address }]);
      await rows.heartbeat(ws.agents[0]!.id);
      connected.push(ws);
    }
    for (let i = 0; i < 8; i++) {
      const ws = await createWorkspace(t, [{ name: 'main', address: a.address }]);
      await rows.heartbeat(ws.agents[0]!.id);
      await rows.goodbye(ws.agents[0]!.id);
      gone.push(ws);
    }
    const empty = await createWorkspace(t, []);
    // Two agents: the name in ?agent= selects which one answers.
    const pair = await createWorkspace(t, [
      { name: 'first', address: a.address, displayOrder: 0 },
      { name: 'second', address: a.address, displayOrder: 1 },
    ]);
    for (const ag of pair.agents) await rows.heartbeat(ag.id);
    await rows.goodbye(pair.agents[0]!.id);
    // Warm: every connected agent dialed once, so the round below makes no dial.
    for (const ws of connected) expect((await conn(t, ws.id)).status).toBe(200);

    const expected: Array<[() => Promise<Reply>, (r: Reply) => void]> = [];
    for (let round = 0; round < 3; round++) {
      for (const ws of connected) {
        expected.push([() => conn(t, ws.id), (r) => expect([r.status, r.body.agent?.id]).toEqual([200, ws.agents[0]!.id])]);
      }
      for (const ws of gone) {
        expected.push([() => conn(t, ws.id), (r) => expect([r.status, r.body.code, r.body.agentId]).toEqual([409, 'AGENT_DISCONNECTED', ws.agents[0]!.id])]);
      }
      expected.push([() => conn(t, empty.id), (r) => expect(r.body.code).toBe('WORKSPACE_HAS_NO_AGENT')]);
      expected.push([() => conn(t, randomUUID()), (r) => expect(r.body.code).toBe('WORKSPACE_NOT_FOUND')]);
      expected.push([() => conn(t, pair.id, undefined, '?agent=second'), (r) => expect([r.status, r.body.agent?.name]).toEqual([200, 'second'])]);
      expected.push([() => conn(t, pair.id, undefined, '?agent=first'), (r) => expect([r.status, r.body.code]).toEqual([409, 'AGENT_DISCONNECTED'])]);
      expected.push([() => conn(t, pair.id, undefined, '?agent=third'), (r) => expect(r.body.code).toBe('AGENT_NOT_FOUND')]);
    }
    const replies = await Promise.all(expected.map(([call]) => call()));
    replies.forEach((r, i) => expected[i]![1](r));
  });

  it('reads that arrive together go in one query; a read with less than the full budget goes alone', async () => {
    const a = await agent();
    const spaces = await Promise.all(Array.from({ length: 30 }, () => createWorkspace(t, [{ name: 'main', address: a.address }])));
    const reads = new CurrentAgentReads(t.handle.pool);
    const before = await queries();
    // 30 workspaces, each read twice, plus unknown ones: all in one turn of the event loop.
    const unknown = Array.from({ length: 5 }, () => randomUUID());
    const results = await Promise.all([
      ...spaces.flatMap((ws) => [reads.read(ws.id, undefined), reads.read(ws.id, 'main')]),
      ...unknown.map((id) => reads.read(id, undefined)),
    ]);
    expect(await queries()).toBe(before + 1);
    spaces.forEach((ws, i) => {
      for (const read of [results[2 * i], results[2 * i + 1]]) {
        expect(read).toMatchObject({ kind: 'agent', ownerId: ws.ownerId, agent: { id: ws.agents[0]!.id, name: 'main' } });
      }
    });
    for (const read of results.slice(2 * spaces.length)) expect(read).toEqual({ kind: 'no_workspace' });

    const alone = await queries();
    await Promise.all([reads.read(spaces[0]!.id, undefined, t.handle.pool.timeoutMs - 1), reads.read(spaces[1]!.id, undefined, t.handle.pool.timeoutMs - 1)]);
    expect(await queries()).toBe(alone + 2);
  });

  it('a change committed before a call is seen by that call, even while batches are in flight', async () => {
    const a = await agent();
    const ws = await createWorkspace(t, [{ name: 'main', address: a.address }]);
    const agentId = ws.agents[0]!.id;
    await rows.heartbeat(agentId);
    const others = await Promise.all(Array.from({ length: 20 }, () => createWorkspace(t, [])));
    for (let i = 0; i < 5; i++) {
      // Keep batches busy with other reads, then change the row and call at once.
      const load = others.map((o) => conn(t, o.id));
      await rows.goodbye(agentId);
      expect((await conn(t, ws.id)).body.code).toBe('AGENT_DISCONNECTED');
      await rows.heartbeat(agentId);
      expect((await conn(t, ws.id)).status).toBe(200);
      await Promise.all(load);
    }
  });
});
