// A tenant's agent costs only that tenant: whatever answers at its address (a scripted MCP
// server on a real socket, test/support/hostile-mcp-agent.ts), each message the gate reads from
// it is bounded in bytes, each tool call in time, and every call of a batch counts against the
// token's caps; a caller that does not read holds a bounded number of answers, and one that
// leaves stops the agent's call at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { eventually } from '../support/eventually.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { connectClient, resultText, type McpClient } from '../support/mcp.js';
import { startHostileAgent, type HostileAgent } from '../support/hostile-mcp-agent.js';

const clients: McpClient[] = [];
const agents: HostileAgent[] = [];
const apps: TestApp[] = [];

afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  for (const agent of agents.splice(0)) await agent.close();
  for (const app of apps.splice(0).reverse()) await app.close();
});

async function app(env: Record<string, string>, share?: TestApp): Promise<TestApp> {
  const started = await startTestApp({ env, ...(share ? { database: share.database } : {}) });
  apps.push(started);
  return started;
}

/** A workspace whose agent is a fresh hostile agent, counted connected. */
async function hostileWorkspace(t: TestApp): Promise<{ ws: Workspace; agent: HostileAgent }> {
  const agent = await startHostileAgent();
  agents.push(agent);
  const ws = await createWorkspace(t, [{ name: 'main', address: agent.address }]);
  await AgentRows.heartbeatOnce(t.database.url, ws.agents[0]!.id);
  return { ws, agent };
}

async function client(t: TestApp, ws: Workspace, token = ENV_ADMIN_TOKEN): Promise<McpClient> {
  const c = await connectClient(`${t.url}/workspaces/${ws.id}/mcp`, { token });
  clients.push(c);
  return c;
}

const errorOf = (result: unknown) => (result as { _meta?: Record<string, unknown> })._meta?.['agentgate/error'] as Record<string, unknown> | undefined;

describe('one message, one call', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await app({ AGENTGATE_BODY_LIMIT_BYTES: String(64 * 1024), AGENTGATE_MCP_CALL_TIMEOUT_MS: '800' });
  });

  it.each([
    ['a JSON answer', { bytes: 200 * 1024 }, 'big'],
    ['one event of a stream', { bytes: 200 * 1024, sse: true }, 'big'],
    ['an event line trickled in and never ended', { bytes: 200 * 1024, chunk: 4096, everyMs: 1 }, 'huge-line'],
  ])('a message over the bound (%s) ends the call with a clear isError result: PAYLOAD_TOO_LARGE', async (_what, args, tool) => {
    const { ws } = await hostileWorkspace(t);
    const mcp = await client(t, ws);
    const result = await mcp.client.callTool({ name: tool, arguments: args });
    expect(result.isError).toBe(true);
    expect(errorOf(result)).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', retryable: false });
    expect(resultText(result)).toMatch(/larger than 65536 bytes/);
  });

  it.each([
    ['progress every 20 ms', 'endless'],
    ['keep-alive comments every 20 ms', 'trickle'],
    ['events that are not JSON', 'garbage'],
    ['answers to other request ids', 'wrong-id'],
    ['a request of its own to the client, then keep-alives', 'server-request'],
  ])('a call has a total time bound whatever the agent sends (%s): AGENT_RESPONSE_TIMEOUT', async (_what, tool) => {
    const { ws, agent } = await hostileWorkspace(t);
    const mcp = await client(t, ws);
    const started = performance.now();
    const result = await mcp.client.callTool({ name: tool, arguments: { everyMs: 20, _meta: undefined } }, undefined, { timeout: 10_000 });
    const took = performance.now() - started;
    expect(errorOf(result)).toMatchObject({ code: 'AGENT_RESPONSE_TIMEOUT', retryable: true });
    expect(resultText(result)).toMatch(/within 800 ms/);
    expect(took).toBeGreaterThanOrEqual(750);
    // The agent's request was given up with the call.
    await eventually(() => agent.abandoned() === 1, 2_000, "the agent's request to close");
  });

  it("a caller that leaves stops the agent's call at once", async () => {
    const { ws, agent } = await hostileWorkspace(t);
    const mcp = await client(t, ws);
    const controller = new AbortController();
    const pending = mcp.client.callTool({ name: 'huge-line', arguments: { bytes: 60 * 1024, chunk: 256, everyMs: 2 } }, undefined, { signal: controller.signal });
    pending.catch(() => undefined);
    await eventually(() => agent.running() === 1, 2_000, 'the call to reach the agent');
    controller.abort();
    // The SDK's client sends a cancel; the HTTP request ends too. Either stops the call.
    await eventually(() => agent.abandoned() === 1, 1_000, "the agent's request to close");
  });
});
