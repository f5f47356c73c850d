// The MCP front door (contract §11), driven by the official SDK's Client over Streamable HTTP against
// a running agentgate and real reference agents (`agentgate agent` processes): initialize and
// ping answered by agentgate whatever the agent's state, every tool through the gate, progress
// while a command runs, cancellation reaching the agent, a killed agent's calls as isError
// results with their hint and tools/list served stale, a rebuild reached at once, calls cut by a
// replacement or a goodbye, two replicas serving one client, auth and owner scoping, bad
// JSON-RPC, the metric and the log line.
import { spawn } from 'node:child_process';
import { request, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProgressNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { ENV_ADMIN_TOKEN, startAppBehindFaultProxy, startTestApp, type AppBehindProxy, type TestApp } from '../support/app.js';
import { eventually } from '../support/eventually.js';
import { AgentRows, agentStatus, createWorkspace, startBuild, type Workspace } from '../support/gate-fixtures.js';
import { connectClient, resultText, type McpClient } from '../support/mcp.js';
import { readPid, running } from '../support/pids.js';
import { referenceAgents, type ReferenceAgent } from '../support/reference-agents.js';
import { agentFixtures } from '../support/agents.js';

// Short bounds so that a silent agent is a strong signal within a second.
const ENV = {
  AGENTGATE_INACTIVE_TIMEOUT_MS: '300',
  AGENTGATE_DISCONNECT_GRACE_MS: '600',
  AGENTGATE_DIAL_TIMEOUT_MS: '1000',
  AGENTGATE_DIAL_BACKOFF_MS: '200',
};

let t: TestApp;
const agents = referenceAgents();
const clients: McpClient[] = [];
const fakes = agentFixtures();

beforeAll(async () => {
  t = await startTestApp({ env: ENV });
});
afterAll(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await t?.close();
});

const mcpUrl = (app: TestApp, workspaceId: string, query = '') => `${app.url}/workspaces/${workspaceId}/mcp${query}`;

async function client(workspaceId: string, options: { token?: string; app?: TestApp; query?: string } = {}): Promise<McpClient> {
  const c = await connectClient(mcpUrl(options.app ?? t, workspaceId, options.query), { token: options.token ?? ENV_ADMIN_TOKEN });
  clients.push(c);
  return c;
}

/** A workspace whose agent is a real reference agent, connected. */
async function workspaceWithAgent(name = 'main'): Promise<{ ws: Workspace; agent: ReferenceAgent }> {
  const port = await agents.port();
  const ws = await createWorkspace(t, [{ name: 'main', address: `http://127.0.0.1:${port}` }]);
  const agent = await agents.start({ gate: t.url, token: ws.agents[0]!.token, port, name });
  await eventually(async () => (await agentStatus(t, ws.id)).body.agent.status === 'connected', 5_000, 'the agent to connect');
  return { ws, agent };
}

/** A new build with a new reference agent; the workspace's agent is then that one. */
async function rebuild(ws: Workspace, name: string): Promise<ReferenceAgent> {
  const port = await agents.port();
  const [registered] = await startBuild(t, ws.id, [{ name: 'main', address: `http://127.0.0.1:${port}` }]);
  const agent = await agents.start({ gate: t.url, token: registered!.token, port, name });
  await eventually(async () => (await agentStatus(t, ws.id)).body.agent.id === registered!.id, 5_000, 'the new agent to be current');
  await eventually(async () => (await agentStatus(t, ws.id)).body.agent.status === 'connected', 5_000, 'the new agent to connect');
  return agent;
}

/**
 * A reference agent streaming a command's output over MCP (a line every 50 ms) once `ticks`
 * lines arrived, then frozen: SIGSTOP, so its sockets stay open, with no goodbye and no
 * heartbeat. `thaw` lets it go and stops it.
 */
async function frozenMidCall(app: TestApp, name: string, options: { ticks: number; timeoutMs: number }) {
  const port = await agents.port();
  const ws = await createWorkspace(app, [{ name: 'main', address: `http://127.0.0.1:${port}` }]);
  const agent = await agents.start({ gate: app.url, token: ws.agents[0]!.token, port, name });
  await eventually(async () => (await agentStatus(app, ws.id)).body.agent.status === 'connected', 5_000, 'the agent to connect');
  const mcp = await client(ws.id, { app });
  let ticks = 0;
  const pending = mcp.client.callTool(
    { name: 'exec', arguments: { command: 'sh', args: ['-c', 'while :; do echo tick; sleep 0.05; done'], timeoutMs: 60_000 } },
    undefined,
    { timeout: options.timeoutMs, onprogress: () => (ticks += 1) },
  );
  pending.catch(() => undefined);
  await eventually(() => ticks >= options.ticks, 5_000, 'the command to stream');
  const pid = agent.cli.child.pid!;
  process.kill(pid, 'SIGSTOP');
  return {
    pending,
    mcp,
    frozenAt: performance.now(),
    thaw: async () => {
      process.kill(pid, 'SIGCONT');
      await agent.kill();
    },
  };
}

/**
 * A 30 s command (with a grandchild of its own, whose pid is returned) started through `mcp`,
 * and cancellable through `controller`; `aborted` counts the agent's abort lines before it.
 */
async function longExec(mcp: McpClient, agent: ReferenceAgent, name: string) {
  const pidFile = path.join(agent.root, `${name}.pid`);
  const controller = new AbortController();
  const pending = mcp.client.callTool(
    { name: 'exec', arguments: { command: 'sh', args: ['-c', `sleep 30 & echo $! > ${pidFile}; sleep 30`], timeoutMs: 60_000 } },
    undefined,
    { signal: controller.signal },
  );
  const grandchild = await readPid(pidFile);
  return { pending, controller, grandchild, aborted: agent.lines('mcp exec aborted').length };
}

async function metric(app: TestApp, method: string, outcome: string): Promise<number> {
  const text = await app.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`agentgate_mcp_requests_total{method="${method}",outcome="${outcome}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A raw POST to the endpoint, as a client that is not the SDK would send it. */
async function post(workspaceId: string, body: string, headers: Record<string, string> = {}, token: string | null = ENV_ADMIN_TOKEN): Promise<Response> {
  return fetch(mcpUrl(t, workspaceId), {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...headers,
    },
    body,
  });
}

const meta = (result: unknown) => (result as { _meta?: Record<string, unknown> })._meta ?? {};

describe('a healthy agent', () => {
  let ws: Workspace;
  let agent: ReferenceAgent;
  let mcp: McpClient;
  beforeAll(async () => {
    ({ ws, agent } = await workspaceWithAgent());
    mcp = await client(ws.id);
  });

  it('initialize is answered by agentgate, with the tools capability; ping too', async () => {
    expect(mcp.client.getServerVersion()).toMatchObject({ name: 'agentgate' });
    expect(mcp.client.getServerCapabilities()).toMatchObject({ tools: {} });
    expect(mcp.client.getInstructions()).toMatch(/isError/);
    expect(mcp.transport.sessionId).toBeUndefined();
    expect(await mcp.client.ping()).toEqual({});
  });

  it("tools/list is the agent's list", async () => {
    const { tools, _meta } = await mcp.client.listTools();
    expect(tools.map((x) => x.name).sort()).toEqual(['exec', 'list_directory', 'read_file', 'write_file']);
    expect(_meta?.['agentgate/stale']).toBeUndefined();
  });

  it('calls every tool through the gate', async () => {
    const exec = await mcp.client.callTool({ name: 'exec', arguments: { command: process.execPath, args: ['-e', 'console.log(6 * 7)'] } });
    expect(exec.isError).toBe(false);
    expect(exec.structuredContent).toMatchObject({ exitCode: 0, stdout: '42\n' });

    const written = await mcp.client.callTool({ name: 'write_file', arguments: { path: 'note.txt', content: 'through the gate' } });
    expect(written.structuredContent).toEqual({ path: 'note.txt', bytes: 16 });
    const read = await mcp.client.callTool({ name: 'read_file', arguments: { path: 'note.txt' } });
    expect(resultText(read)).toBe('through the gate');
    const listed = await mcp.client.callTool({ name: 'list_directory', arguments: {} });
    expect((listed.structuredContent as { entries: Array<{ name: string }> }).entries.map((e) => e.name)).toEqual(['note.txt', 'who.txt']);
    expect(resultText(await mcp.client.callTool({ name: 'read_file', arguments: { path: 'who.txt' } }))).toBe('main');
    // What the agent saw was signed by the gate, for /mcp.
    expect(agent.lines('mcp exec finished').length).toBeGreaterThan(0);
  });

  it('a write_file as large as the gate lets through by default reaches the tool (3 MB)', async () => {
    const content = 'x'.repeat(3 * 1024 * 1024);
    const written = await mcp.client.callTool({ name: 'write_file', arguments: { path: 'big.txt', content } });
    expect(errorOf(written)).toBeUndefined();
    expect(written.isError).toBeFalsy();
    expect(written.structuredContent).toEqual({ path: 'big.txt', bytes: content.length });
  });

  it("a tool's own error passes through unchanged, and counts as tool_error", async () => {
    const before = await metric(t, 'tools/call', 'tool_error');
    const failed = await mcp.client.callTool({ name: 'exec', arguments: { command: process.execPath, args: ['-e', 'process.exit(3)'] } });
    expect(failed.isError).toBe(true);
    expect(failed.structuredContent).toMatchObject({ exitCode: 3 });
    expect(meta(failed)['agentgate/error']).toBeUndefined();
    const outside = await mcp.client.callTool({ name: 'read_file', arguments: { path: '../../etc/passwd' } });
    expect(outside.isError).toBe(true);
    expect(resultText(outside)).toMatch(/^FORBIDDEN/);
    const bad = await mcp.client.callTool({ name: 'exec', arguments: { command: 42 } });
    expect(bad.isError).toBe(true);
    // Counted when each response closes, which may be just after the client has its answer.
    await eventually(async () => (await metric(t, 'tools/call', 'tool_error')) === before + 3, 2_000, 'three tool errors counted');
  });

  it("streams the agent's progress to the caller while the command runs", async () => {
    const seen: Array<{ message?: string; at: number }> = [];
    const script = 'let i = 0; const t = setInterval(() => { console.log("tick " + i); if (++i === 4) clearInterval(t); }, 120)';
    const result = await mcp.client.callTool({ name: 'exec', arguments: { command: process.execPath, args: ['-e', script] } }, undefined, {
      onprogress: (p) => seen.push({ message: p.message, at: performance.now() }),
    });
    const doneAt = performance.now();
    expect(result.isError).toBe(false);
    expect(seen.map((p) => p.message).join('')).toBe('tick 0\ntick 1\ntick 2\ntick 3\n');
    expect(doneAt - seen[0]!.at).toBeGreaterThanOrEqual(250);
  });

  it('sends no progress when the caller gave no token', async () => {
    const other = await client(ws.id);
    let notified = 0;
    other.client.setNotificationHandler(ProgressNotificationSchema, () => {
      notified += 1;
    });
    const result = await other.client.callTool({ name: 'exec', arguments: { command: process.execPath, args: ['-e', 'console.log("quiet")'] } });
    expect(result.structuredContent).toMatchObject({ stdout: 'quiet\n' });
    expect(notified).toBe(0);
  });

  it("notifications/cancelled aborts the agent's call: the command is killed and the agent logs it", async () => {
    const { pending, controller, grandchild, aborted } = await longExec(mcp, agent, 'cancel');
    const before = await metric(t, 'tools/call', 'cancelled');
    controller.abort(new Error('the user changed their mind'));
    await expect(pending).rejects.toThrow('the user changed their mind');
    await eventually(async () => !(await running(grandchild)), 2_000, `the command ${grandchild} to be killed`);
    await eventually(() => agent.lines('mcp exec aborted').length > aborted, 2_000, 'the agent to log the abort');
    await eventually(async () => (await metric(t, 'tools/call', 'cancelled')) === before + 1, 2_000, 'the cancel counted');
    // The session goes on.
    expect(await mcp.client.ping()).toEqual({});
  });

  it('cancelling one call of a batch leaves its sibling to answer', async () => {
    const pidFile = path.join(agent.root, 'batch.pid');
    const go = path.join(agent.root, 'batch.go');
    const batch = [
      { jsonrpc: '2.0', id: 'slow', method: 'tools/call', params: { name: 'exec', arguments: { command: 'sh', args: ['-c', `echo $$ > ${pidFile}; sleep 30`] } } },
      // Answers only once the test says so, after the cancel.
      { jsonrpc: '2.0', id: 'quick', method: 'tools/call', params: { name: 'exec', arguments: { command: 'sh', args: ['-c', `while [ ! -e ${go} ]; do sleep 0.02; done; echo sibling`] } } },
    ];
    const res = await post(ws.id, JSON.stringify(batch), { 'mcp-protocol-version': '2025-06-18' });
    expect(res.status).toBe(200);
    const text = res.text();
    await readPid(pidFile);
    const cancel = await post(ws.id, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'slow', reason: 'enough' } }), {
      'mcp-protocol-version': '2025-06-18',
    });
    expect(cancel.status).toBe(202);
    await writeFile(go, '');
    const messages = messagesOf(await text);
    expect(messages.find((m) => m.id === 'quick')).toMatchObject({ result: { isError: false, structuredContent: { stdout: 'sibling\n' } } });
    expect(messages.find((m) => m.id === 'slow' && 'result' in m)).toBeUndefined();
  });

  it('a batch that uses a request id twice is refused as a JSON-RPC Invalid Request, nothing run', async () => {
    const before = agent.lines('mcp exec finished').length;
    const call = { jsonrpc: '2.0', method: 'tools/call', params: { name: 'exec', arguments: { command: 'true' } } };
    const res = await post(ws.id, JSON.stringify([{ ...call, id: 4 }, { ...call, id: 4 }, { jsonrpc: '2.0', id: '4', method: 'ping' }]));
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32600, message: expect.stringMatching(/request id 4 more than once/) }, id: null });
    expect(agent.lines('mcp exec finished')).toHaveLength(before);
  });

  it("the caller's HTTP request ending aborts the agent's call too", async () => {
    const other = await client(ws.id);
    const pidFile = path.join(agent.root, 'gone.pid');
    const pending = other.client.callTool({ name: 'exec', arguments: { command: 'sh', args: ['-c', `sleep 30 & echo $! > ${pidFile}; sleep 30`] } });
    pending.catch(() => undefined);
    const grandchild = await readPid(pidFile);
    const aborted = agent.lines('mcp exec aborted').length;
    await other.close();
    await eventually(async () => !(await running(grandchild)), 2_000, `the command ${grandchild} to be killed`);
    await eventually(() => agent.lines('mcp exec aborted').length > aborted, 2_000, 'the agent to log the abort');
  });

  it('logs one line per request with the MCP method and outcome', async () => {
    await mcp.client.callTool({ name: 'exec', arguments: { command: 'true' } });
    await eventually(
      () => t.logs.some((l) => l.includes('"mcpMethod":"tools/call"') && l.includes('"mcpOutcome":"ok"') && l.includes('"msg":"request"')),
      2_000,
      'the request line',
    );
    const line = JSON.parse(t.logs.findLast((l) => l.includes('"mcpMethod":"tools/call"') && l.includes('"mcpOutcome":"ok"'))!) as Record<string, unknown>;
    expect(line).toMatchObject({ route: '/workspaces/:workspaceId/mcp', status: 200, workspaceId: ws.id });
    // One line, not one per hook.
    const lines = t.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.reqId === line.reqId && l.msg === 'request');
    expect(lines).toHaveLength(1);
  });
});

const errorOf = (result: unknown) => meta(result)['agentgate/error'] as { code: string; retryable: boolean; agentStatus: string | null; disconnectedSeconds: number | null; retryAfter?: number } | undefined;

/** Calls until the gate's answer carries `code` (a killed agent goes weak, then strong). */
async function callUntil(mcp: McpClient, code: string, args: Record<string, unknown> = { command: 'true' }): Promise<Awaited<ReturnType<McpClient['client']['callTool']>>> {
  let last: Awaited<ReturnType<McpClient['client']['callTool']>> | undefined;
  await eventually(
    async () => {
      last = await mcp.client.callTool({ name: 'exec', arguments: args });
      return errorOf(last)?.code === code;
    },
    5_000,
    `a tools/call answered ${code}`,
    50,
  );
  return last!;
}

describe('an agent that dies, and its replacement', () => {
  it('killed without a goodbye: isError results with the hint (weak, then AGENT_DISCONNECTED), tools/list stale; a rebuild is reached at once', async () => {
    const { ws, agent } = await workspaceWithAgent('first');
    const mcp = await client(ws.id);
    const { tools } = await mcp.client.listTools();
    expect(tools).toHaveLength(4);

    const okBefore = await metric(t, 'tools/call', 'ok');
    await agent.kill();
    const disconnected = await callUntil(mcp, 'AGENT_DISCONNECTED');
    // Every refused or failed call on the way was counted under its code, none as ok.
    expect(await metric(t, 'tools/call', 'ok')).toBe(okBefore);
    expect(disconnected.isError).toBe(true);
    expect(resultText(disconnected)).toMatch(/^The workspace agent is disconnected and cannot run tools; restart the workspace \(stop it, then start it\) and try again\.\nAGENT_DISCONNECTED: /);
    expect(errorOf(disconnected)).toMatchObject({ code: 'AGENT_DISCONNECTED', retryable: false, agentStatus: 'disconnected' });
    expect(errorOf(disconnected)!.disconnectedSeconds).toEqual(expect.any(Number));
    await eventually(async () => (await metric(t, 'tools/call', 'AGENT_DISCONNECTED')) > 0, 2_000, 'the refused call counted');

    // The model still sees the tools, and reads why they cannot run when it calls one.
    const stale = await mcp.client.listTools();
    expect(stale.tools.map((x) => x.name).sort()).toEqual(tools.map((x) => x.name).sort());
    expect(stale._meta).toMatchObject({ 'agentgate/stale': true, 'agentgate/error': { code: 'AGENT_DISCONNECTED' } });
    await eventually(async () => (await metric(t, 'tools/list', 'AGENT_DISCONNECTED')) > 0, 2_000, 'the refused list counted');
    // The session itself never broke: agentgate answers ping and a new initialize.
    expect(await mcp.client.ping()).toEqual({});
    const fresh = await client(ws.id);
    expect(fresh.client.getServerVersion()).toMatchObject({ name: 'agentgate' });

    await rebuild(ws, 'second');
    const who = await mcp.client.callTool({ name: 'read_file', arguments: { path: 'who.txt' } });
    expect(who.isError).toBeFalsy();
    expect(resultText(who)).toBe('second');
    const listed = await mcp.client.listTools();
    expect(listed._meta?.['agentgate/stale']).toBeUndefined();
  });

  it('a stopped workspace: tools/list serves the last list, tools/call tells the model to start it', async () => {
    const { ws, agent } = await workspaceWithAgent();
    const mcp = await client(ws.id);
    await mcp.client.listTools();
    await t.call('POST', `/workspaces/${ws.id}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } });
    await agent.stop();
    const stale = await mcp.client.listTools();
    expect(stale.tools).toHaveLength(4);
    expect(stale._meta).toMatchObject({ 'agentgate/stale': true, 'agentgate/error': { code: 'WORKSPACE_HAS_NO_AGENT', agentStatus: null } });
    const refused = await mcp.client.callTool({ name: 'exec', arguments: { command: 'true' } });
    expect(refused.isError).toBe(true);
    expect(resultText(refused)).toMatch(/start the workspace/);
    expect(errorOf(refused)).toMatchObject({ code: 'WORKSPACE_HAS_NO_AGENT', retryable: false });
  });

  it('an agent never seen: tools/list is an empty list, marked stale', async () => {
    const ws = await createWorkspace(t, [{ name: 'main', address: 'http://127.0.0.1:9' }]);
    const rows = await AgentRows.open(t.database.url);
    try {
      await rows.set(ws.agents[0]!.id, { createdAgoMs: 600_000, firstAgoMs: null, lastAgoMs: null, discAgoMs: null });
    } finally {
      await rows.close();
    }
    const mcp = await client(ws.id);
    const listed = await mcp.client.listTools();
    expect(listed.tools).toEqual([]);
    expect(listed._meta).toMatchObject({ 'agentgate/stale': true, 'agentgate/error': { code: 'AGENT_NEVER_CONNECTED', agentStatus: 'timeout' } });
  });

  it('a call whose workspace is rebuilt mid-call ends with AGENT_CONNECTION_LOST; its command is killed', async () => {
    const { ws, agent } = await workspaceWithAgent('old');
    const mcp = await client(ws.id);
    const pidFile = path.join(agent.root, 'replaced.pid');
    const pending = mcp.client.callTool({ name: 'exec', arguments: { command: 'sh', args: ['-c', `sleep 30 & echo $! > ${pidFile}; sleep 30`] } });
    const grandchild = await readPid(pidFile);
    await startBuild(t, ws.id, [{ name: 'main', address: 'http://127.0.0.1:9' }]);
    const lost = await pending;
    expect(lost.isError).toBe(true);
    expect(errorOf(lost)).toMatchObject({ code: 'AGENT_CONNECTION_LOST', retryable: true });
    // The build's own event or the rows read on the work's timer, whichever comes first: both
    // tell the model the workspace was rebuilt.
    expect(resultText(lost)).toMatch(/may answer on the next attempt[\s\S]*AGENT_CONNECTION_LOST: the workspace was stopped.*rebuilt/);
    await eventually(async () => !(await running(grandchild)), 2_000, `the command ${grandchild} to be killed`);
  });

  it('a call whose agent freezes mid-call (SIGSTOP: no goodbye, no heartbeat) ends once the gate calls it disconnected, long before its silence bound', async () => {
    const frozen = await frozenMidCall(t, 'frozen-mid-call', { ticks: 3, timeoutMs: 20_000 });
    try {
      const result = await frozen.pending;
      // This app's silence bound is the default 300 s: only the watch over running calls ends it,
      // once silence passes the inactive timeout (300 ms) and the grace (600 ms).
      expect(performance.now() - frozen.frozenAt).toBeLessThan(10_000);
      expect(errorOf(result)).toMatchObject({ code: 'AGENT_CONNECTION_LOST', retryable: true });
      expect(resultText(result)).toContain('the agent stopped reporting heartbeats during the call');
      // The next call is refused at once, as the agent is disconnected.
      const next = await frozen.mcp.client.callTool({ name: 'exec', arguments: { command: 'true' } });
      expect(errorOf(next)).toMatchObject({ code: 'AGENT_DISCONNECTED' });
    } finally {
      await frozen.thaw();
    }
  });

  it('a call whose agent says goodbye mid-call ends with AGENT_CONNECTION_LOST', async () => {
    const { ws, agent } = await workspaceWithAgent();
    const mcp = await client(ws.id);
    const pidFile = path.join(agent.root, 'goodbye.pid');
    const pending = mcp.client.callTool({ name: 'exec', arguments: { command: 'sh', args: ['-c', `echo $$ > ${pidFile}; sleep 30`] } });
    await readPid(pidFile);
    await agent.stop();
    const lost = await pending;
    expect(errorOf(lost)).toMatchObject({ code: 'AGENT_CONNECTION_LOST' });
    expect(resultText(lost)).toMatch(/said goodbye during the call/);
    await eventually(async () => (await metric(t, 'tools/call', 'AGENT_CONNECTION_LOST')) >= 2, 2_000, 'both lost calls counted');
  });

  it('a dial that times out is an isError result (AGENT_DIAL_TIMEOUT, retryable), never a hang', async () => {
    const hole = await fakes.blackHole();
    const ws = await createWorkspace(t, [{ name: 'main', address: hole.address }]);
    await AgentRows.heartbeatOnce(t.database.url, ws.agents[0]!.id);
    const mcp = await client(ws.id);
    const result = await mcp.client.callTool({ name: 'exec', arguments: { command: 'true' } });
    expect(result.isError).toBe(true);
    expect(errorOf(result)).toMatchObject({ code: 'AGENT_DIAL_TIMEOUT', retryable: true, agentStatus: 'connected' });
    expect(resultText(result)).toMatch(/may answer on the next attempt/);
  });
});

describe('cancels during a dial (a black-holed agent, a dial bound of 10 s)', () => {
  let patient: TestApp;
  beforeAll(async () => {
    patient = await startTestApp({ database: t.database, env: { ...ENV, AGENTGATE_DIAL_TIMEOUT_MS: '10000' } });
  });
  afterAll(async () => {
    await patient?.close();
  });

  async function blackHoled() {
    const hole = await fakes.blackHole();
    const ws = await createWorkspace(patient, [{ name: 'main', address: hole.address }]);
    await AgentRows.heartbeatOnce(patient.database.url, ws.agents[0]!.id);
    return { hole, ws };
  }

  it('a cancel during the dial releases it: the black-holed socket closes within a second of the abort, the call counted as cancelled', async () => {
    const { hole, ws } = await blackHoled();
    const mcp = await client(ws.id, { app: patient });
    const cancelled = await metric(patient, 'tools/call', 'cancelled');
    const controller = new AbortController();
    const pending = mcp.client.callTool({ name: 'exec', arguments: { command: 'true' } }, undefined, { signal: controller.signal });
    pending.catch(() => undefined);
    await eventually(() => hole.sockets.opened > 0, 2_000, 'the dial to start');
    controller.abort(new Error('never mind'));
    // The dial bound is 10 s: a socket closed within a second went with the cancel.
    await hole.sockets.waitClosed(1, 1_000);
    await expect(pending).rejects.toThrow('never mind');
    await eventually(async () => (await metric(patient, 'tools/call', 'cancelled')) === cancelled + 1, 2_000, 'the cancel counted');
    // Its HTTP request was answered (no response for the call), not cut as a caller gone.
    await eventually(
      () => patient.logs.some((l) => l.includes('"msg":"request"') && l.includes(ws.id) && l.includes('"mcpOutcome":"cancelled"') && l.includes('"status":200')),
      2_000,
      'the request logged as cancelled, status 200',
    );
  });

  /** The response's status and text, or a failure once `ms` pass (far below the 10 s dial bound). */
  async function within(ms: number, sent: Promise<Response>): Promise<{ status: number; text: string }> {
    const answered = sent.then(async (res) => ({ status: res.status, text: await res.text() }));
    return Promise.race([answered, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))]);
  }

  it.each([
    ['a wrong Accept', { accept: 'application/json' }, { name: 'exec', arguments: {} }, 406, /Not Acceptable/],
    ['a wrong content type', { 'content-type': 'text/plain' }, { name: 'exec', arguments: {} }, 415, /Unsupported Media Type/],
    ['params without a tool name', {}, { arguments: {} }, 200, /"code":-32602,"message":"Invalid params: params.name: /],
  ])('%s is answered without a dial', async (_name, headers: Record<string, string>, params, status, answer) => {
    const { hole, ws } = await blackHoled();
    const sent = fetch(mcpUrl(patient, ws.id), {
      method: 'POST',
      headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params }),
    });
    const res = await within(5_000, sent);
    expect(res.status).toBe(status);
    expect(res.text).toMatch(answer);
    expect(hole.sockets.opened).toBe(0);
  });

  it('a cancel in the same POST as its call stops the dial: the response ends, the cancel counted', async () => {
    const { ws } = await blackHoled();
    const cancelled = await metric(patient, 'tools/call', 'cancelled');
    const batch = [
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'exec', arguments: { command: 'true' } } },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1, reason: 'never mind' } },
    ];
    const res = await fetch(mcpUrl(patient, ws.id), {
      method: 'POST',
      headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify(batch),
    });
    expect(res.status).toBe(200);
    // Well before the dial bound: the response ends with nothing for the cancelled call.
    const text = await Promise.race([res.text(), new Promise<string>((_, reject) => setTimeout(() => reject(new Error('the response did not end')), 5_000))]);
    expect(text).not.toMatch(/"id":1/);
    await eventually(async () => (await metric(patient, 'tools/call', 'cancelled')) === cancelled + 1, 2_000, 'the cancel counted');
  });
});

describe('other MCP servers at the agent, and the bounds', () => {
  let short: TestApp;
  beforeAll(async () => {
    short = await startTestApp({ database: t.database, env: { ...ENV, AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: '300' } });
  });
  // The scripted agents stay connected as real ones do: they heartbeat (a silent one would be
  // called disconnected, and its running calls ended, within a second).
  let rows: Awaited<ReturnType<typeof AgentRows.open>>;
  const beating = new Set<string>();
  let beat: NodeJS.Timeout;
  beforeAll(async () => {
    rows = await AgentRows.open(t.database.url);
    beat = setInterval(() => {
      for (const id of beating) void rows.heartbeat(id).catch(() => undefined);
    }, 100);
  });
  afterAll(async () => {
    clearInterval(beat);
    await rows?.close();
    await short?.close();
  });

  interface Script {
    /** Answers one JSON-RPC message; undefined: never answer. */
    answer(message: { method?: string; id?: number; params?: unknown }, headers: Record<string, string | string[] | undefined>): { status: number; body?: unknown; headers?: Record<string, string> } | undefined;
    /** Writes the response itself instead (an event stream, say); true when it did. */
    raw?(message: { method?: string; id?: number }, res: ServerResponse): boolean;
  }

  /** A fake agent whose /mcp answers in JSON (no event stream), or as `raw` writes, as `script` says. */
  async function scriptedAgent(script: Script) {
    const agent = await fakes.agent();
    const seen: Array<{ method?: string; session?: string }> = [];
    agent.handle = (req, res) => {
      if (!req.url?.endsWith('/mcp')) return false;
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        const message = JSON.parse(text) as { method?: string; id?: number; params?: unknown };
        seen.push({ method: message.method, session: req.headers['mcp-session-id'] as string | undefined });
        if (script.raw?.(message, res)) return;
        const answer = script.answer(message, req.headers);
        if (!answer) return;
        res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
      });
      return true;
    };
    const ws = await createWorkspace(short, [{ name: 'main', address: agent.address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    beating.add(ws.agents[0]!.id);
    return { agent, ws, seen };
  }

  const initialized = (id: number | undefined) => ({
    status: 200,
    body: { jsonrpc: '2.0', id, result: { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'scripted', version: '1' } } },
  });

  it('a stateful server: the session is made once per connection, sent on every call, and made again when the server forgets it', async () => {
    let sessions = 0;
    let forget = false;
    const { ws, seen } = await scriptedAgent({
      answer: (m, headers) => {
        if (m.method === 'initialize') return { ...initialized(m.id), headers: { 'mcp-session-id': `s${++sessions}` } };
        if (headers['mcp-session-id'] !== `s${sessions}`) return { status: 400, body: { jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Bad Request: no valid session' } } };
        if (forget) {
          forget = false;
          return { status: 404, body: { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } } };
        }
        if (m.id === undefined) return { status: 202 };
        return { status: 200, body: { jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: `in ${String(headers['mcp-session-id'])}` }] } } };
      },
    });
    const mcp = await client(ws.id, { app: short });
    expect(resultText(await mcp.client.callTool({ name: 'any', arguments: {} }))).toBe('in s1');
    expect(resultText(await mcp.client.callTool({ name: 'any', arguments: {} }))).toBe('in s1');
    forget = true;
    expect(resultText(await mcp.client.callTool({ name: 'any', arguments: {} }))).toBe('in s2');
    expect(seen.map((x) => x.method)).toEqual([
      'initialize',
      'notifications/initialized',
      'tools/call',
      'tools/call',
      'tools/call',
      'initialize',
      'notifications/initialized',
      'tools/call',
    ]);
  });

  it("an agent's result that is not MCP (result: null) is an isError result saying so, never agentgate's internal error", async () => {
    const { ws } = await scriptedAgent({
      answer: (m) =>
        m.method === 'initialize' ? initialized(m.id)
        : m.id === undefined ? { status: 202 }
        : { status: 200, body: { jsonrpc: '2.0', id: m.id, result: m.method === 'tools/list' ? { tools: 'none' } : null } },
    });
    const mcp = await client(ws.id, { app: short });
    const result = await mcp.client.callTool({ name: 'exec', arguments: {} });
    expect(errorOf(result)).toMatchObject({ code: 'INVALID_REQUEST', retryable: false });
    expect(resultText(result)).toMatch(/the agent's answer to tools\/call is not a valid MCP result/);
    const listed = await mcp.client.listTools();
    expect(listed).toMatchObject({ tools: [], _meta: { 'agentgate/stale': true, 'agentgate/error': { code: 'INVALID_REQUEST' } } });
  });

  it("the agent's own JSON-RPC error passes through as a JSON-RPC error", async () => {
    const { ws } = await scriptedAgent({
      answer: (m) => {
        if (m.method === 'initialize') return initialized(m.id);
        if (m.id === undefined) return { status: 202 };
        return { status: 200, body: { jsonrpc: '2.0', id: m.id, error: { code: -32602, message: 'Unknown tool: nope' } } };
      },
    });
    const mcp = await client(ws.id, { app: short });
    const before = await metric(short, 'tools/call', 'rpc_error');
    const failure = await mcp.client.callTool({ name: 'nope', arguments: {} }).catch((e: unknown) => e);
    expect(failure).toMatchObject({ code: -32602, message: expect.stringMatching(/Unknown tool: nope/) });
    await eventually(async () => (await metric(short, 'tools/call', 'rpc_error')) === before + 1, 2_000, 'the rpc error counted');
  });

  it('an agent with no MCP server is an isError result naming its HTTP answer, not to be retried', async () => {
    const { ws } = await scriptedAgent({ answer: () => ({ status: 404, body: { error: 'no such route' } }) });
    const mcp = await client(ws.id, { app: short });
    const result = await mcp.client.callTool({ name: 'exec', arguments: {} });
    expect(result.isError).toBe(true);
    expect(errorOf(result)).toMatchObject({ code: 'NOT_FOUND', retryable: false });
    expect(resultText(result)).toMatch(/HTTP 404 to MCP at \/mcp.*repeating the same call will not help/);
    expect(resultText(result)).not.toMatch(/try again/);
  });

  it.each([
    [413, 'PAYLOAD_TOO_LARGE', false],
    [401, 'INVALID_REQUEST', false],
    [429, 'RATE_LIMITED', true],
  ])("the agent's HTTP %i to a call is %s (retryable: %s), never AGENT_UNREACHABLE", async (status, code, retryable) => {
    const { ws } = await scriptedAgent({
      answer: (m) =>
        m.method === 'initialize' ? initialized(m.id)
        : m.id === undefined ? { status: 202 }
        : { status, body: { error: `refused with ${status}` }, headers: { 'retry-after': '3' } },
    });
    const mcp = await client(ws.id, { app: short });
    const result = await mcp.client.callTool({ name: 'exec', arguments: {} });
    expect(errorOf(result)).toMatchObject({ code, retryable });
    expect(resultText(result)).toMatch(new RegExp(`HTTP ${status} to MCP at /mcp`));
    if (!retryable) expect(resultText(result)).not.toMatch(/try again/);
    if (code === 'RATE_LIMITED') expect(errorOf(result)!.retryAfter).toBe(3);
  });

  it('an agent that never answers a call: AGENT_RESPONSE_TIMEOUT within the headers bound', async () => {
    const { ws } = await scriptedAgent({
      answer: (m) => (m.method === 'initialize' ? initialized(m.id) : m.id === undefined ? { status: 202 } : undefined),
    });
    const mcp = await client(ws.id, { app: short });
    const started = performance.now();
    const result = await mcp.client.callTool({ name: 'exec', arguments: {} });
    expect(errorOf(result)).toMatchObject({ code: 'AGENT_RESPONSE_TIMEOUT', retryable: true });
    expect(performance.now() - started).toBeLessThan(2_000);
    // tools/list likewise, served stale (empty: this agent never listed).
    const listed = await mcp.client.listTools();
    expect(listed).toMatchObject({ tools: [], _meta: { 'agentgate/stale': true, 'agentgate/error': { code: 'AGENT_RESPONSE_TIMEOUT' } } });
  });

  /** initialize and notifications/initialized answered; every call gets event-stream headers, then `then`. */
  const streamOpened = (then: (res: ServerResponse) => void): Script => ({
    answer: (m) => (m.method === 'initialize' ? initialized(m.id) : { status: 202 }),
    raw: (m, res) => {
      if (m.method === 'initialize' || m.id === undefined) return false;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': opened\n\n');
      then(res);
      return true;
    },
  });

  it('an agent that sends event-stream headers, then nothing: AGENT_RESPONSE_TIMEOUT once silent past the headers bound', async () => {
    const { ws } = await scriptedAgent(streamOpened(() => undefined));
    const mcp = await client(ws.id, { app: short });
    // The client would wait far longer: the answer is the gate's.
    const result = await mcp.client.callTool({ name: 'exec', arguments: {} }, undefined, { timeout: 10_000 });
    expect(errorOf(result)).toMatchObject({ code: 'AGENT_RESPONSE_TIMEOUT', retryable: true });
    expect(resultText(result)).toMatch(/sent nothing \(no event, no keep-alive\) for 300 ms/);
  });

  it("an agent's progress faster than the caller reads it: at most about 1 MiB waits per call, the rest dropped and counted; the result still arrives", async () => {
    const events = 512;
    const message = 'x'.repeat(64 * 1024);
    let sentAll!: () => void;
    const agentDone = new Promise<void>((resolve) => (sentAll = resolve));
    const { ws } = await scriptedAgent({
      answer: (m) => (m.method === 'initialize' ? initialized(m.id) : { status: 202 }),
      raw: (m, res) => {
        if (m.method !== 'tools/call') return false;
        const token = (m as { params?: { _meta?: { progressToken?: unknown } } }).params?._meta?.progressToken;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        void (async () => {
          // As fast as the gate reads: 32 MiB of progress, then the result.
          for (let i = 1; i <= events; i += 1) {
            const progress = { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: i, message } };
            if (!res.write(`event: message\ndata: ${JSON.stringify(progress)}\n\n`)) await new Promise((r) => res.once('drain', r));
          }
          const result = { jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'done' }] } };
          res.end(`event: message\ndata: ${JSON.stringify(result)}\n\n`, () => sentAll());
        })();
        return true;
      },
    });
    const dropped = async () => Number(/^agentgate_mcp_progress_dropped_total (\d+)$/m.exec(await short.metrics.registry.metrics())?.[1]);
    const before = await dropped();
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'exec', arguments: {}, _meta: { progressToken: 'p' } } });
    // A caller that reads nothing until the agent has sent everything, then reads it all.
    const received = await new Promise<string>((resolve, reject) => {
      const req = request(mcpUrl(short, ws.id), {
        method: 'POST',
        headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      });
      req.on('response', (res) => {
        res.pause();
        let text = '';
        void agentDone.then(() => {
          res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve(text));
          res.resume();
        });
      });
      req.on('error', reject);
      req.end(body);
    });
    const messages = received
      .split('\n')
      .filter((line) => line.startsWith('data: '))
      .map((line) => JSON.parse(line.slice(6)) as { method?: string; id?: number; result?: unknown; params?: { progress: number } });
    const progress = messages.filter((m) => m.method === 'notifications/progress');
    expect(progress.length).toBeGreaterThan(0);
    // The kernel's socket buffers hold a share too (about 4 MiB here, by its autotuning): the
    // check is bounded against unbounded (all 32 MiB); the 1 MiB rule itself is a unit test.
    expect(progress.length * message.length).toBeLessThan(16 * 1024 * 1024);
    expect(progress.map((m) => m.params!.progress)).toEqual([...progress.map((m) => m.params!.progress)].sort((a, b) => a - b));
    expect(messages.at(-1)).toEqual({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'done' }] } });
    expect((await dropped()) - before).toBe(events - progress.length);
  });

  it('tools/list is bounded end to end: keep-alive comments alone do not hold it', async () => {
    const { ws } = await scriptedAgent(
      streamOpened((res) => {
        const beat = setInterval(() => res.write(': keepalive\n\n'), 50);
        res.once('close', () => clearInterval(beat));
      }),
    );
    const mcp = await client(ws.id, { app: short });
    const listed = await mcp.client.listTools(undefined, { timeout: 10_000 });
    expect(listed).toMatchObject({ tools: [], _meta: { 'agentgate/stale': true, 'agentgate/error': { code: 'AGENT_RESPONSE_TIMEOUT' } } });
  });

  it('a reference agent frozen mid-call (SIGSTOP: socket open, no goodbye): the running call ends with AGENT_RESPONSE_TIMEOUT', async () => {
    // Output every 50 ms keeps the response alive past the 300 ms bound while the agent runs.
    const frozen = await frozenMidCall(short, 'frozen', { ticks: 10, timeoutMs: 10_000 });
    try {
      const result = await frozen.pending;
      expect(result.isError).toBe(true);
      expect(errorOf(result)).toMatchObject({ code: 'AGENT_RESPONSE_TIMEOUT', retryable: true });
    } finally {
      await frozen.thaw();
    }
  });

  it('an agent that never answers initialize: AGENT_DIAL_TIMEOUT within the dial bound', async () => {
    const { ws } = await scriptedAgent({ answer: () => undefined });
    const mcp = await client(ws.id, { app: short });
    const started = performance.now();
    const result = await mcp.client.callTool({ name: 'exec', arguments: {} });
    expect(errorOf(result)).toMatchObject({ code: 'AGENT_DIAL_TIMEOUT' });
    expect(resultText(result)).toMatch(/initialize/);
    expect(performance.now() - started).toBeLessThan(3_000);
  });
});

describe('two replicas', () => {
  let other: TestApp;
  beforeAll(async () => {
    other = await startTestApp({ database: t.database, env: ENV });
  });
  afterAll(async () => {
    await other?.close();
  });

  it('answer alternate requests of one client', async () => {
    const { ws } = await workspaceWithAgent();
    const origins = [new URL(t.url).origin, new URL(other.url).origin];
    let turn = 0;
    const alternating = (url: string | URL, init?: RequestInit) => {
      const target = new URL(url);
      const origin = new URL(origins[turn++ % 2]!);
      target.host = origin.host;
      return fetch(target, init);
    };
    const before = [await metric(t, 'tools/call', 'ok'), await metric(other, 'tools/call', 'ok')];
    const mcp = await connectClient(mcpUrl(t, ws.id), { token: ENV_ADMIN_TOKEN, fetch: alternating });
    clients.push(mcp);
    expect((await mcp.client.listTools()).tools).toHaveLength(4);
    for (let i = 0; i < 4; i += 1) {
      const r = await mcp.client.callTool({ name: 'exec', arguments: { command: process.execPath, args: ['-e', `console.log(${i})`] } });
      expect(r.structuredContent).toMatchObject({ stdout: `${i}\n` });
    }
    let after: number[] = [];
    await eventually(
      async () => {
        after = [await metric(t, 'tools/call', 'ok'), await metric(other, 'tools/call', 'ok')];
        return after[0]! - before[0]! + after[1]! - before[1]! >= 4;
      },
      2_000,
      'the four calls counted',
    );
    expect(after[0]! - before[0]!).toBeGreaterThan(0);
    expect(after[1]! - before[1]!).toBeGreaterThan(0);
    expect(after[0]! - before[0]! + after[1]! - before[1]!).toBe(4);
  });

  it("a cancel that reaches the other replica still stops the call: the agent's command is killed", async () => {
    const { ws, agent } = await workspaceWithAgent();
    const origins = [new URL(t.url).origin, new URL(other.url).origin];
    // Each POST goes to the other replica than the one before; what went where is kept.
    const sent: Array<{ method: string; origin: string }> = [];
    let turn = 0;
    const alternating = (url: string | URL, init?: RequestInit) => {
      const target = new URL(url);
      const origin = origins[turn++ % 2]!;
      target.host = new URL(origin).host;
      const method = typeof init?.body === 'string' ? String((JSON.parse(init.body) as { method?: unknown }).method) : '';
      sent.push({ method, origin });
      return fetch(target, init);
    };
    const mcp = await connectClient(mcpUrl(t, ws.id), { token: ENV_ADMIN_TOKEN, fetch: alternating });
    clients.push(mcp);
    const { pending, controller, grandchild, aborted } = await longExec(mcp, agent, 'cross-replica');
    const apps = new Map([
      [origins[0]!, t],
      [origins[1]!, other],
    ]);
    const call = sent.find((s) => s.method === 'tools/call')!;
    const before = await metric(apps.get(call.origin)!, 'tools/call', 'cancelled');
    controller.abort(new Error('the user changed their mind'));
    await expect(pending).rejects.toThrow('the user changed their mind');
    await eventually(() => sent.some((s) => s.method === 'notifications/cancelled'), 2_000, 'the cancel to be sent');
    const cancel = sent.find((s) => s.method === 'notifications/cancelled')!;
    expect(cancel.origin).not.toBe(call.origin);
    await eventually(async () => !(await running(grandchild)), 3_000, `the command ${grandchild} to be killed`);
    await eventually(() => agent.lines('mcp exec aborted').length > aborted, 2_000, 'the agent to log the abort');
    await eventually(async () => (await metric(apps.get(call.origin)!, 'tools/call', 'cancelled')) === before + 1, 2_000, 'the cancel counted where the call ran');
    expect(await mcp.client.ping()).toEqual({});
  });
});

describe('a second client: the MCP inspector CLI (scripts/mcp-inspector.sh)', () => {
  it('lists the tools and calls one with the bearer header', async () => {
    const { ws } = await workspaceWithAgent('inspected');
    const script = path.resolve(import.meta.dirname, '../../scripts/mcp-inspector.sh');
    const run = async (...args: string[]) => {
      const child = spawn(script, [mcpUrl(t, ws.id), ENV_ADMIN_TOKEN, ...args], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code, `${err}\n${out}`).toBe(0);
      // SHOW_INSPECTOR=1 prints what the inspector answered (for a release note, say).
      if (process.env.SHOW_INSPECTOR) process.stderr.write(`$ scripts/mcp-inspector.sh <url> <token> ${args.join(' ')}\n${out}\n`);
      return JSON.parse(out) as Record<string, unknown>;
    };
    const listed = await run('--method', 'tools/list');
    expect((listed.tools as Array<{ name: string }>).map((x) => x.name).sort()).toEqual(['exec', 'list_directory', 'read_file', 'write_file']);
    const called = await run('--method', 'tools/call', '--tool-name', 'read_file', '--tool-arg', 'path=who.txt');
    expect(called).toMatchObject({ content: [{ type: 'text', text: 'inspected' }] });
    const exec = await run('--method', 'tools/call', '--tool-name', 'exec', '--tool-arg', 'command=echo', '--tool-arg', 'args=["hello", "inspector"]');
    expect(exec).toMatchObject({ isError: false, structuredContent: { exitCode: 0, stdout: 'hello inspector\n' } });
  });
});

describe('auth and scoping (problem+json before MCP parsing)', () => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = await createWorkspace(t, [{ name: 'main', address: 'http://127.0.0.1:9' }]);
  });
  const init = JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });

  async function expectProblem(res: Response, status: number, code: string): Promise<void> {
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({ status, code });
  }

  it('no token or an unknown one is 401; an agent token is 403', async () => {
    await expectProblem(await post(ws.id, init, {}, null), 401, 'UNAUTHENTICATED');
    await expectProblem(await post(ws.id, init, {}, 'agcon_nope'), 401, 'UNAUTHENTICATED');
    await expectProblem(await post(ws.id, init, {}, ws.agents[0]!.token), 403, 'FORBIDDEN');
    await expect(connectClient(mcpUrl(t, ws.id))).rejects.toThrow(/401/);
  });

  it("a conn token of another owner sees 404, like a workspace that does not exist, for initialize and tools alike", async () => {
    const mine = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'mine', scope: 'conn', ownerId: ws.ownerId } });
    const theirs = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'theirs', scope: 'conn', ownerId: randomUUID() } });
    const list = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    await expectProblem(await post(ws.id, init, {}, theirs.body.token), 404, 'WORKSPACE_NOT_FOUND');
    await expectProblem(await post(ws.id, list, {}, theirs.body.token), 404, 'WORKSPACE_NOT_FOUND');
    await expectProblem(await post(randomUUID(), init), 404, 'WORKSPACE_NOT_FOUND');
    await expectProblem(await post(randomUUID(), list), 404, 'WORKSPACE_NOT_FOUND');
    // The owner's own token gets in.
    const own = await client(ws.id, { token: mine.body.token });
    expect(own.client.getServerVersion()).toMatchObject({ name: 'agentgate' });
  });

  it('?agent= chooses an agent; an unknown name is 404 AGENT_NOT_FOUND, a malformed one 400', async () => {
    const res = await fetch(mcpUrl(t, ws.id, '?agent=nope'), {
      method: 'POST',
      headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: init,
    });
    await expectProblem(res, 404, 'AGENT_NOT_FOUND');
    const bad = await fetch(mcpUrl(t, ws.id, '?agent=..'), {
      method: 'POST',
      headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: init,
    });
    await expectProblem(bad, 400, 'INVALID_REQUEST');
    await expectProblem(await post('not-a-uuid', init), 400, 'INVALID_REQUEST');
  });

  it('over the rate limit is 429 problem+json with Retry-After, the budget shared with the other chat routes', async () => {
    const limited = await startTestApp({ database: t.database, env: { ...ENV, AGENTGATE_RATE_LIMIT_PER_MIN: '2' } });
    try {
      const ping = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
      const send = () =>
        fetch(mcpUrl(limited, ws.id), {
          method: 'POST',
          headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          body: ping,
        });
      expect((await limited.call('GET', `/workspaces/${ws.id}/agent`, { token: ENV_ADMIN_TOKEN })).status).toBe(200);
      expect((await send()).status).toBe(200);
      const refused = await send();
      expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
      await expectProblem(refused, 429, 'RATE_LIMITED');
    } finally {
      await limited.close();
    }
  });

  it('a body over the limit is 413 problem+json', async () => {
    const small = await startTestApp({ database: t.database, env: { ...ENV, AGENTGATE_BODY_LIMIT_BYTES: '1024' } });
    try {
      const res = await fetch(mcpUrl(small, ws.id), {
        method: 'POST',
        headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(2048) } }),
      });
      await expectProblem(res, 413, 'PAYLOAD_TOO_LARGE');
    } finally {
      await small.close();
    }
  });
});

describe('bad JSON-RPC gets JSON-RPC errors, never a 5xx', () => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = await createWorkspace(t, [{ name: 'main', address: 'http://127.0.0.1:9' }]);
  });

  it.each([
    ['malformed JSON', '{"jsonrpc": "2.0", "id": 1, ', 400, -32700],
    ['an empty body', '', 400, -32700],
    ['the wrong jsonrpc version', JSON.stringify({ jsonrpc: '1.0', id: 1, method: 'ping' }), 400, -32700],
    ['no method', JSON.stringify({ jsonrpc: '2.0', id: 1 }), 400, -32700],
    ['a bare string', JSON.stringify('ping'), 400, -32700],
    ['an empty batch', '[]', 400, -32600],
  ])('%s: %s JSON-RPC error', async (_name, body, status, code) => {
    const res = await post(ws.id, body);
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { code }, id: null });
  });

  it('an unknown method is -32601 in a normal response', async () => {
    const res = await post(ws.id, JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'resources/list' }));
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/"id":5[^\n]*"code":-32601|"code":-32601[^\n]*"id":5/);
  });

  it('a batch is answered message by message', async () => {
    const res = await post(ws.id, JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', id: 2, method: 'no/such' }]));
    expect(res.status).toBeLessThan(500);
    const text = await res.text();
    expect(text).toMatch(/"id":1/);
    expect(text).toMatch(/-32601/);
  });

  it('a wrong Accept or content type is the transport’s 406 or 415', async () => {
    const ping = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
    const accept = await post(ws.id, ping, { accept: 'application/json' });
    expect(accept.status).toBe(406);
    const type = await post(ws.id, ping, { 'content-type': 'text/plain' });
    expect(type.status).toBe(415);
  });

  it('GET and DELETE are 405 with Allow: POST (stateless), after authentication', async () => {
    for (const method of ['GET', 'DELETE']) {
      const res = await fetch(mcpUrl(t, ws.id), { method, headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, accept: 'text/event-stream' } });
      expect(res.status, method).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
      expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });
      expect((await fetch(mcpUrl(t, ws.id), { method })).status, `${method} without a token`).toBe(401);
    }
    // PUT is no route at all.
    const put = await fetch(mcpUrl(t, ws.id), { method: 'PUT', headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}` } });
    expect(put.status).toBe(404);
  });

  it('the SDK client closes its session without error (DELETE is 405, as the transport allows)', async () => {
    const c = await connectClient(mcpUrl(t, ws.id), { token: ENV_ADMIN_TOKEN });
    await expect(c.transport.terminateSession()).resolves.toBeUndefined();
    await c.close();
  });

  it('/openapi.json names the route, its 405s included', async () => {
    const doc = await t.call('GET', '/openapi.json');
    const route = doc.body.paths['/workspaces/{workspaceId}/mcp'];
    expect(route.post.summary).toMatch(/MCP/);
    expect(route.post.tags).toEqual(['chat']);
    expect(route.get.responses['405']).toBeDefined();
    expect(route.delete.responses['405']).toBeDefined();
  });

  it('counts invalid requests', async () => {
    expect(await metric(t, 'invalid', 'invalid')).toBeGreaterThan(0);
    expect(await metric(t, 'other', 'rpc_error')).toBeGreaterThan(0);
  });
});



/** The JSON-RPC messages of an event-stream (or JSON) response body. */
function messagesOf(text: string): Array<Record<string, unknown>> {
  if (!text.includes('data:')) return [JSON.parse(text) as Record<string, unknown>];
  return text
    .split('\n')
    .filter((l) => l.startsWith('data:'))
    .map((l) => JSON.parse(l.slice(5)) as Record<string, unknown>);
}

describe('a database outage', () => {
  let b: AppBehindProxy;
  beforeAll(async () => {
    b = await startAppBehindFaultProxy({ ...ENV, AGENTGATE_DB_TIMEOUT_MS: '300' });
  });
  afterAll(async () => {
    await b?.close();
  });

  it("never shows a workspace's kept tool list to a token of another owner: an empty stale list instead", async () => {
    const app = b.t;
    const port = await agents.port();
    const ws = await createWorkspace(app, [{ name: 'main', address: `http://127.0.0.1:${port}` }]);
    await agents.start({ gate: app.url, token: ws.agents[0]!.token, port, name: 'owned' });
    await eventually(async () => (await agentStatus(app, ws.id)).body.agent.status === 'connected', 5_000, 'the agent to connect');
    const owner = await client(ws.id, { app });
    expect((await owner.client.listTools()).tools).toHaveLength(4);
    const theirs = await app.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'theirs', scope: 'conn', ownerId: randomUUID() } });
    const list = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    const listAs = (token: string) =>
      fetch(mcpUrl(app, ws.id), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
        body: list,
      });
    // Seen once while the database answers (the token is then cached): not theirs to see.
    expect((await listAs(theirs.body.token as string)).status).toBe(404);
    b.proxy.setMode('cut');
    try {
      const during = await listAs(theirs.body.token as string);
      const text = await during.text();
      expect(text).not.toMatch(/exec|read_file/);
      const [answer] = messagesOf(text);
      expect(answer).toMatchObject({ id: 1, result: { tools: [], _meta: { 'agentgate/stale': true, 'agentgate/error': { code: 'DATABASE_UNAVAILABLE' } } } });
      // The owner's side (here an admin) still sees its tools.
      expect((await owner.client.listTools()).tools).toHaveLength(4);
    } finally {
      b.proxy.setMode('pass');
    }
  });
});

describe('a caller that leaves while the gate reads the database', () => {
  it('lets go of the cached connection the gate then hands out, and the app still closes promptly', async () => {
    // Default bounds: a database slowed to 400 ms a round trip must not make the agent look silent.
    const b = await startAppBehindFaultProxy({ AGENTGATE_DB_TIMEOUT_MS: '2000' });
    let closed = false;
    try {
      const app = b.t;
      const port = await agents.port();
      const ws = await createWorkspace(app, [{ name: 'main', address: `http://127.0.0.1:${port}` }]);
      await agents.start({ gate: app.url, token: ws.agents[0]!.token, port, name: 'leased', heartbeatMs: 5_000 });
      await eventually(async () => (await agentStatus(app, ws.id)).body.agent.status === 'connected', 8_000, 'the agent to connect');
      const mcp = await connectClient(mcpUrl(app, ws.id), { token: ENV_ADMIN_TOKEN });
      await mcp.client.callTool({ name: 'exec', arguments: { command: 'true' } });
      await mcp.close();
      const agentId = ws.agents[0]!.id;
      const conn = app.gate.connections.peek(agentId)!;
      expect(conn).toBeDefined();

      b.proxy.setMode('latency', { latencyMs: 400 });
      // A socket of its own (fetch's pool may keep a spare connection open, which would hold the
      // server's close for reasons of its own).
      const sent = request(mcpUrl(app, ws.id), {
        method: 'POST',
        agent: false,
        headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      });
      const failed = new Promise<Error>((resolve) => sent.once('error', resolve));
      sent.end(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'exec', arguments: { command: 'true' } } }));
      setTimeout(() => sent.destroy(new Error('the caller left')), 150);
      expect((await failed).message).toBe('the caller left');
      // The gate's read ends (on the cached connection), and the request is logged as the caller's leaving.
      await eventually(
        () => app.logs.some((l) => l.includes('"msg":"request"') && l.includes('"status":499') && l.includes('/mcp')),
        5_000,
        'the request logged as the caller leaving',
      );
      b.proxy.setMode('pass');
      // Evicted (as a goodbye does), a connection closes once its last lease is let go: none may be left behind.
      app.gate.handleEvent({ kind: 'agent_disconnected', workspaceId: ws.id, agentId });
      await eventually(() => conn.closed, 2_000, 'the evicted connection to close');
    } finally {
      b.proxy.setMode('pass');
      await Promise.race([
        b.close().then(() => (closed = true)),
        new Promise((resolve) => setTimeout(resolve, 5_000)),
      ]);
    }
    expect(closed, 'the app to close within 5 s').toBe(true);
  }, 30_000);
});
