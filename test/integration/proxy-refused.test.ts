// A proxied request on a cached connection whose agent stopped listening: the pool must open a
// new socket, the connect is refused, nothing is sent. That is AGENT_UNREACHABLE (the agent may
// answer on the next attempt), never AGENT_CONNECTION_LOST (which says the request may have run).
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { startAgent, type FakeAgent } from '../support/agents.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import type { HttpConnection } from '../../src/transport/http/connection.js';

let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };
let agent: FakeAgent;
let ws: Workspace;

beforeAll(async () => {
  t = await startTestApp();
  rows = await AgentRows.open(t.database.url);
  agent = await startAgent();
  agent.handle = (req, res) => {
    if (!req.url?.endsWith('/tool')) return false;
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ran":true}');
    return true;
  };
  ws = await createWorkspace(t, [{ name: 'main', address: agent.address }]);
  await rows.heartbeat(ws.agents[0]!.id);
});
afterAll(async () => {
  await rows.close();
  await agent.close();
  await t.close();
});

const proxied = (path: string, init: RequestInit = {}) =>
  fetch(`${t.url}/workspaces/${ws.id}/conn${path}`, { ...init, headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}` } });

it('a refused connect on a cached connection, nothing sent → 502 AGENT_UNREACHABLE, not AGENT_CONNECTION_LOST', async () => {
  const first = await proxied('/tool', { method: 'POST', body: 'x' });
  expect(first.status).toBe(200);
  expect(await first.json()).toEqual({ ran: true });

  // The connection stays cached; its pool must open a new socket for the next request.
  const gated = await t.gate.connect({ workspaceId: ws.id, ownerScope: null, signal: new AbortController().signal, log: t.app.log });
  const conn = gated.lease.conn as HttpConnection;
  gated.lease.release();
  expect(gated.cached).toBe(true);
  await agent.close();
  await vi.waitFor(() => expect(conn.pool.stats.connected).toBe(0), { timeout: 2_000, interval: 10 });
  const toolCalls = agent.requests.filter((r) => r.url.endsWith('/tool')).length;

  const refused = await proxied('/tool', { method: 'POST', body: 'side effects' });
  expect(refused.status).toBe(502);
  const body = (await refused.json()) as { code: string; retryable: boolean; hint: string; agentId: string };
  expect(body).toMatchObject({ code: 'AGENT_UNREACHABLE', retryable: true, agentId: ws.agents[0]!.id });
  expect(body.hint).not.toMatch(/restart/i);
  expect(agent.requests.filter((r) => r.url.endsWith('/tool'))).toHaveLength(toolCalls);

  // The suspect connection is not reused: the next call dials, and that dial is refused too.
  const next = await proxied('/tool');
  expect(next.status).toBe(502);
  const dialed = (await next.json()) as { code: string; detail: string };
  expect(dialed).toMatchObject({ code: 'AGENT_UNREACHABLE', detail: 'the agent refused the connection' });
});
