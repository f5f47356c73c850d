// A proxied request in flight on an agent that stops reporting heartbeats (frozen, cut off: no
// goodbye, its socket open) ends once the gate would refuse a new call on that agent, not when a
// silence bound runs out, or never: before the response headers it is answered 502
// AGENT_CONNECTION_LOST; during the body the caller's response is cut off. The silence bound here
// is the default 300 s, so only the watch over calls in flight can end either.
import type http from 'node:http';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { agentFixtures, type FakeAgent } from '../support/agents.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';

let t: TestApp;
let agent: FakeAgent;
let ws: Workspace;
const fakes = agentFixtures();
// Requests the agent took and never finished, ended when the test is over.
const stalled: http.ServerResponse[] = [];

beforeAll(async () => {
  t = await startTestApp({ env: { AGENTGATE_INACTIVE_TIMEOUT_MS: '300', AGENTGATE_DISCONNECT_GRACE_MS: '600' } });
  agent = await fakes.agent();
  agent.handle = (req, res) => {
    if (req.url === '/stall-headers') {
      stalled.push(res);
      return true;
    }
    if (req.url === '/stall-body') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part\n');
      stalled.push(res);
      return true;
    }
    return false;
  };
});
afterAll(async () => {
  for (const res of stalled) res.destroy();
  await t?.close();
});

/** A workspace whose agent heartbeats once, now, and never again. */
async function silentFromNow(): Promise<Workspace> {
  const workspace = await createWorkspace(t, [{ name: 'main', address: agent.address }]);
  await AgentRows.heartbeatOnce(t.database.url, workspace.agents[0]!.id);
  return workspace;
}

const call = (workspace: Workspace, path: string) =>
  fetch(`${t.url}/workspaces/${workspace.id}/conn${path}`, { headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}` } });

it('waiting for the headers: answered 502 AGENT_CONNECTION_LOST once the agent counts as disconnected', async () => {
  ws = await silentFromNow();
  const started = performance.now();
  const r = await call(ws, '/stall-headers');
  expect(performance.now() - started).toBeLessThan(5_000);
  expect(r.status).toBe(502);
  expect(await r.json()).toMatchObject({ code: 'AGENT_CONNECTION_LOST', detail: expect.stringContaining('the agent stopped reporting heartbeats during the call') });
  // A new call is refused at once.
  const next = await call(ws, '/stall-headers');
  expect(next.status).toBe(409);
  expect(await next.json()).toMatchObject({ code: 'AGENT_DISCONNECTED' });
});

it('during the body: the caller gets what the agent sent, then its response is cut off, never a clean end', async () => {
  const workspace = await silentFromNow();
  const r = await call(workspace, '/stall-body');
  expect(r.status).toBe(200);
  const reader = r.body!.getReader();
  const first = await reader.read();
  expect(new TextDecoder().decode(first.value)).toBe('first part\n');
  const started = performance.now();
  await expect(reader.read()).rejects.toThrow();
  expect(performance.now() - started).toBeLessThan(5_000);
  expect(t.logs.some((l) => l.includes('"stream":"broken"') && l.includes(workspace.id))).toBe(true);
});
