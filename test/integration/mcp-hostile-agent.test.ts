// A tenant's agent costs only that tenant: whatever answers at its address (a scripted MCP
// server on a real socket, test/support/hostile-mcp-agent.ts), each message the gate reads from
// it is bounded in bytes, each tool call in time, and every call of a batch counts against the
// token's caps; a caller that does not read holds a bounded number of answers, and one that
// leaves stops the agent's call at once.
import { connect, type AddressInfo } from 'node:net';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { parseMcpBodies, serveMcpPost } from '../../src/http/mcp-http.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { eventually } from '../support/eventually.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { connectClient, resultText, type McpClient } from '../support/mcp.js';
import { startHostileAgent, type HostileAgent } from '../support/hostile-mcp-agent.js';
import { MAX_AGENT_REQUESTS_AT_ONCE } from '../../src/mcp/front-door.js';

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

/** A raw JSON-RPC POST to the front door, its event stream read whole. */
async function post(t: TestApp, ws: Workspace, body: unknown, token = ENV_ADMIN_TOKEN): Promise<{ status: number; messages: Array<Record<string, unknown>> }> {
  const res = await fetch(`${t.url}/workspaces/${ws.id}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const messages = text
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>);
  return { status: res.status, messages };
}

const call = (id: number, name: string, args: Record<string, unknown> = {}) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

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

describe('batches and the per-token cap', () => {
  it("every call of a batch counts against the token's cap: the agent never runs more than the cap at once", async () => {
    const t = await app({ AGENTGATE_MAX_REQUESTS_PER_TOKEN: '2' });
    const { ws, agent } = await hostileWorkspace(t);
    const token = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'capped', scope: 'conn' } });
    expect(token.status).toBe(201);
    const batch = Array.from({ length: 6 }, (_, i) => call(i + 1, 'echo', { ms: 300 }));
    const answered = await post(t, ws, batch, token.body.token as string);
    expect(answered.status).toBe(200);
    expect(agent.maxRunning()).toBeLessThanOrEqual(2);
    const results = answered.messages.map((m) => m.result as { isError?: boolean; _meta?: Record<string, { code?: string }> });
    expect(results).toHaveLength(6);
    const codes = results.map((r) => (r.isError ? r._meta?.['agentgate/error']?.code : 'ok'));
    expect(codes.filter((c) => c === 'ok').length).toBeGreaterThanOrEqual(2);
    expect(codes.filter((c) => c === 'RATE_LIMITED').length).toBeGreaterThanOrEqual(1);
    expect(codes.every((c) => c === 'ok' || c === 'RATE_LIMITED'), codes.join(',')).toBe(true);
    // Every slot came back.
    await eventually(async () => (await post(t, ws, call(99, 'echo'), token.body.token as string)).status === 200, 2_000, 'a call after the batch');
  });

  it(`a batch runs at most ${MAX_AGENT_REQUESTS_AT_ONCE} requests to the agent at once, and answers them all`, async () => {
    const t = await app({});
    const { ws, agent } = await hostileWorkspace(t);
    const batch = Array.from({ length: 10 }, (_, i) => call(i + 1, 'echo', { ms: 100, text: `n${i + 1}` }));
    const answered = await post(t, ws, batch);
    expect(answered.messages.map((m) => m.id).sort((a, b) => Number(a) - Number(b))).toEqual(batch.map((b) => b.id));
    expect(answered.messages.every((m) => (m.result as { isError?: boolean }).isError !== true)).toBe(true);
    expect(agent.maxRunning()).toBeLessThanOrEqual(MAX_AGENT_REQUESTS_AT_ONCE);
    expect(agent.started()).toBe(10);
  });

  it('a caller that never reads: answers wait with backpressure, the rest of its batch never starts, and it is cut off after the drain bound', async () => {
    const t = await app({ AGENTGATE_REQUEST_TIMEOUT_MS: '1000' });
    const { ws, agent } = await hostileWorkspace(t);
    const batch = JSON.stringify(Array.from({ length: 10 }, (_, i) => call(i + 1, 'big', { bytes: 8 * 1024 * 1024 })));
    const url = new URL(t.url);
    const socket = connect(Number(url.port), url.hostname);
    socket.on('error', () => undefined);
    // Never read: the socket stays paused, its kernel buffer fills, and then the gate's.
    socket.pause();
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
    socket.write(
      `POST /workspaces/${ws.id}/mcp HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${ENV_ADMIN_TOKEN}\r\n` +
        `content-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: ${Buffer.byteLength(batch)}\r\n\r\n${batch}`,
    );
    await eventually(() => agent.started() >= 2, 5_000, 'calls to start');
    // The gate gives the caller up after the drain bound: its slots come back while it still
    // reads nothing (a paused socket does not see its own close).
    const slots = t.app.concurrency;
    const env = { kind: 'admin', tokenId: 'env' } as const;
    expect(slots.held('request', env)).toBeGreaterThan(0);
    await eventually(() => slots.held('request', env) === 0, 5_000, 'the slots to be released');
    // One answer in the socket, the others waiting their turn to be written: no more started.
    expect(agent.started()).toBeLessThanOrEqual(MAX_AGENT_REQUESTS_AT_ONCE + 1);
    socket.resume();
    await closed;
  });
});

describe('nothing internal reaches the caller', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await app({});
  });

  it('deeply nested arguments are refused as a JSON-RPC error that names the problem, never the internal error', async () => {
    const { ws, agent } = await hostileWorkspace(t);
    const depth = 50_000;
    const nested = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
    for (const batch of [false, true]) {
      const message = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":${nested}}}`;
      const res = await fetch(`${t.url}/workspaces/${ws.id}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: batch ? `[${message}]` : message,
      });
      const text = await res.text();
      expect(text).not.toMatch(/stack|RangeError|at [A-Za-z]+ \(/i);
      expect(res.status).toBe(400);
      expect(JSON.parse(text)).toMatchObject({ jsonrpc: '2.0', error: { code: -32600, message: expect.stringMatching(/nests arrays and objects more than 64 levels deep/) as unknown } });
    }
    expect(agent.started()).toBe(0);
  });

  it("an agent's answer nested too deep is an isError result saying what the agent did wrong", async () => {
    const { ws } = await hostileWorkspace(t);
    const mcp = await client(t, ws);
    const result = await mcp.client.callTool({ name: 'deep', arguments: { depth: 50_000 } });
    expect(result.isError).toBe(true);
    expect(resultText(result)).not.toMatch(/stack|RangeError/i);
    expect(errorOf(result)).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it("an answer the transport cannot write, or a handler's own failure, is an internal error without its text: never a hang, never a leak", async () => {
    // A server of its own on serveMcpPost, the function every MCP route answers through.
    const server = Fastify({ logger: false });
    const logged: string[] = [];
    const log = { ...server.log, error: (obj: unknown) => void logged.push(JSON.stringify(obj)) } as unknown as FastifyBaseLogger;
    await server.register(async (scope) => {
      parseMcpBodies(scope);
      scope.post('/mcp', async (request, reply) => {
        const mcp = new Server({ name: 'unwritable', version: '1' }, { capabilities: { tools: {} } });
        mcp.setRequestHandler(CallToolRequestSchema, (call) => {
          if (call.params.name === 'throws') throw new Error('secret internal detail');
          // A BigInt cannot be serialised: the transport's write fails.
          return { content: [], structuredContent: { n: 1n } };
        });
        await serveMcpPost(request, reply, mcp, request.body, { drainTimeoutMs: 1_000, log });
      });
    });
    await server.listen({ port: 0, host: '127.0.0.1' });
    try {
      const { port } = server.server.address() as AddressInfo;
      const c = await connectClient(`http://127.0.0.1:${port}/mcp`);
      clients.push(c);
      for (const name of ['unwritable', 'throws']) {
        const failed = await c.client.callTool({ name, arguments: {} }, undefined, { timeout: 5_000 }).then(
          () => 'answered',
          (error: Error) => error.message,
        );
        expect(failed).toBe('MCP error -32603: Internal error');
      }
      expect(logged.join('\n')).toMatch(/BigInt/);
      expect(logged.join('\n')).toMatch(/secret internal detail/);
    } finally {
      await server.close();
    }
  });
});
