// Tracing (OpenTelemetry, W3C Trace Context): a proxied call is one trace, from the caller's span
// through the gate's spans to the `traceparent` the agent receives; refusals and failures are
// recorded with their code; nothing secret becomes an attribute. With tracing off, the caller's
// trace context passes through unchanged when well-formed and is dropped when not.
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapSetter, trace, type Span } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { closedPortAddress } from '../support/agents.js';
import { startEchoAgent, type EchoAgent } from '../support/echo-agent.js';
import { startWsAgent, type WsAgent } from '../support/ws-agent.js';
import { eventually } from '../support/eventually.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { CurrentAgentReads } from '../../src/db/gate-read.js';

const root = path.resolve(import.meta.dirname, '../..');
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
/** The chat server's side: its own spans, from the same provider. */
const callerTracer = provider.getTracer('chat-server');
const propagator = new W3CTraceContextPropagator();

let t: TestApp;
let rows: AgentRows & { close(): Promise<void> };
let agent: EchoAgent;
let ws: Workspace;

beforeAll(async () => {
  t = await startTestApp({ tracing: { provider }, env: { AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: '500', AGENTGATE_DIAL_TIMEOUT_MS: '500' } });
  rows = await AgentRows.open(t.database.url);
  agent = await startEchoAgent();
  ws = await createWorkspace(t, [{ name: 'main', address: `${agent.address}/base` }]);
  await rows.heartbeat(ws.agents[0]!.id);
});
afterAll(async () => {
  await rows?.close();
  await agent?.close();
  await t?.close();
  await provider.shutdown();
});

/** The caller's `traceparent` for a request it makes under `span`, and a `tracestate` of its own. */
function callerHeaders(span: Span): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
  return { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, ...carrier, tracestate: 'chat=t61rcWkgMzE' };
}

const spansOf = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);
function only(spans: ReadableSpan[], name: string): ReadableSpan {
  const found = named(spans, name);
  expect(found.map((s) => s.name), `one ${name} span`).toEqual([name]);
  return found[0]!;
}
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const idOf = (s: ReadableSpan | Span) => s.spanContext().spanId;
const traceparentOf = (s: ReadableSpan) => `00-${s.spanContext().traceId}-${s.spanContext().spanId}-01`;

/** Makes one call under a fresh caller span; resolves with the trace once the server span ended. */
async function traced(call: (headers: Record<string, string>) => Promise<Response>, serverSpans = 1) {
  const caller = callerTracer.startSpan('chat-server tool call', { kind: SpanKind.CLIENT });
  const response = await call(callerHeaders(caller));
  const text = await response.text();
  caller.end();
  const traceId = caller.spanContext().traceId;
  // The server span ends on the response's `close`, just after the caller has the response.
  await eventually(() => named(spansOf(traceId), 'chat-server tool call').length === 1 && spansOf(traceId).filter((s) => s.kind === SpanKind.SERVER).length === serverSpans, 2_000, 'the server span');
  return { response, text, caller, traceId, spans: spansOf(traceId) };
}

const proxied = (workspace: Workspace, rest: string, init: RequestInit = {}) => (headers: Record<string, string>) =>
  fetch(`${t.url}/workspaces/${workspace.id}/conn${rest}`, { ...init, headers });

/** One MCP tools/call to the workspace's front door, with the caller's headers. */
const mcpCall = (app: TestApp, workspace: Workspace) => (headers: Record<string, string>) =>
  fetch(`${app.url}/workspaces/${workspace.id}/mcp`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'exec', arguments: {} } }),
  });

describe('tracing on', () => {
  it('a proxied call is one trace: caller span, server span, gate, database read, dial and proxy spans, and the agent’s traceparent', async () => {
    const before = agent.requests.length;
    const body = JSON.stringify({ tool: 'exec', secret: 'body-secret-value' });
    const { response, caller, traceId, spans } = await traced(proxied(ws, '/echo/tool?x=1', { method: 'POST', body }));
    expect(response.status).toBe(200);

    // Every span is in the caller's trace.
    for (const s of spans) expect(s.spanContext().traceId).toBe(traceId);
    const server = only(spans, 'POST /workspaces/{workspaceId}/conn/{path}');
    const gate = only(spans, 'agentgate.gate');
    // The gate's read, and after the dial the read that checks the agent is still current.
    const [read, recheck] = named(spans, 'agentgate.db.read').sort((a, b) => (a.attributes['agentgate.db.recheck'] ? 1 : 0) - (b.attributes['agentgate.db.recheck'] ? 1 : 0));
    const dial = only(spans, 'agentgate.dial');
    const proxy = only(spans, 'agentgate.proxy');
    expect(spans).toHaveLength(7);

    // Who is whose parent.
    expect(server.kind).toBe(SpanKind.SERVER);
    expect(parentOf(server)).toBe(idOf(caller));
    expect(parentOf(gate)).toBe(idOf(server));
    expect(parentOf(read!)).toBe(idOf(gate));
    expect(parentOf(recheck!)).toBe(idOf(gate));
    expect(parentOf(dial)).toBe(idOf(gate));
    expect(parentOf(proxy)).toBe(idOf(server));

    // What each says.
    const agentId = ws.agents[0]!.id;
    expect(server.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/workspaces/:workspaceId/conn/*',
      'http.response.status_code': 200,
      'agentgate.workspace.id': ws.id,
      'agentgate.agent.id': agentId,
      'agentgate.outcome': 'ok',
    });
    expect(gate.attributes).toMatchObject({
      'agentgate.workspace.id': ws.id,
      'agentgate.agent.id': agentId,
      'agentgate.outcome': 'ok',
      'agentgate.degraded': false,
      'agentgate.cached': false,
    });
    expect(read!.attributes).toMatchObject({ 'db.system.name': 'postgresql', 'agentgate.db.result': 'agent', 'agentgate.db.recheck': false, 'agentgate.outcome': 'ok' });
    expect(read!.attributes['agentgate.db.batch.size']).toBeGreaterThanOrEqual(1);
    expect(read!.events.map((e) => e.name)).toEqual(['agentgate.db.query_sent']);
    expect(recheck!.attributes).toMatchObject({ 'agentgate.db.result': 'agent', 'agentgate.db.recheck': true, 'agentgate.db.batch.size': 1 });
    // The dial comes between the two reads. (The SDK takes a span's start from Date.now(), to the
    // millisecond, and its end from the performance clock: compare to within a millisecond.)
    const ns = (time: [number, number]) => BigInt(time[0]) * 1_000_000_000n + BigInt(time[1]);
    const inOrder = (a: [number, number], b: [number, number]) => ns(a) <= ns(b) + 1_000_000n;
    expect(inOrder(read!.endTime, dial.startTime)).toBe(true);
    expect(inOrder(dial.endTime, recheck!.startTime)).toBe(true);
    expect(dial.attributes).toMatchObject({ 'agentgate.agent.id': agentId, 'agentgate.dial.result': 'ok', 'agentgate.dial.joined': false });
    expect(proxy.kind).toBe(SpanKind.CLIENT);
    expect(proxy.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.response.status_code': 200, 'agentgate.agent.id': agentId, 'agentgate.proxy.stream': 'complete' });
    for (const s of spans) expect(s.status.code).toBe(SpanStatusCode.UNSET);
    // The proxy span covers the whole relay, inside the server span.
    expect(inOrder(proxy.endTime, server.endTime)).toBe(true);

    // The agent saw the trace: its health check under the dial span, the tool call under the
    // proxy span, the caller's tracestate carried along.
    const received = agent.requests.slice(before);
    const health = received.find((r) => r.url === '/base/health');
    const call = received.find((r) => r.url === '/base/echo/tool?x=1');
    expect(health?.headers.traceparent).toBe(traceparentOf(dial));
    expect(call?.headers.traceparent).toBe(traceparentOf(proxy));
    expect(call?.headers.tracestate).toBe('chat=t61rcWkgMzE');

    // No attribute holds the token, the signature, the body or the raw path.
    const attributes = JSON.stringify(spans.map((s) => [s.attributes, s.events]));
    expect(attributes).not.toContain(ENV_ADMIN_TOKEN);
    expect(attributes).not.toContain(String(call?.headers['x-agentgate-auth']).slice(3, 40));
    expect(attributes).not.toContain('body-secret-value');
    expect(attributes).not.toContain('/echo/tool');
    expect(attributes).not.toMatch(/authorization|x-agentgate-auth/i);
  });

  it('a call on the cached connection: no dial span; POST .../conn has its own route name', async () => {
    const { response, spans } = await traced((headers) => fetch(`${t.url}/workspaces/${ws.id}/conn`, { method: 'POST', headers }));
    expect(response.status).toBe(200);
    const server = only(spans, 'POST /workspaces/{workspaceId}/conn');
    const gate = only(spans, 'agentgate.gate');
    expect(parentOf(only(spans, 'agentgate.db.read'))).toBe(idOf(gate));
    expect(parentOf(gate)).toBe(idOf(server));
    expect(gate.attributes['agentgate.cached']).toBe(true);
    expect(named(spans, 'agentgate.dial')).toEqual([]);
    expect(named(spans, 'agentgate.proxy')).toEqual([]);
  });

  it('a sentinel refusal (AGENT_DISCONNECTED) is a gate span with its code, not an error, and no agent is contacted', async () => {
    const quiet = await startEchoAgent();
    try {
      const gone = await createWorkspace(t, [{ name: 'main', address: quiet.address }]);
      await rows.heartbeat(gone.agents[0]!.id, 3_000);
      await rows.goodbye(gone.agents[0]!.id, 2_000);
      const { response, text, spans } = await traced(proxied(gone, '/echo/tool', { method: 'POST', body: '{}' }));
      expect(response.status, text).toBe(409);
      const server = only(spans, 'POST /workspaces/{workspaceId}/conn/{path}');
      const gate = only(spans, 'agentgate.gate');
      expect(gate.attributes).toMatchObject({
        'agentgate.outcome': 'AGENT_DISCONNECTED',
        'agentgate.workspace.id': gone.id,
        'agentgate.agent.id': gone.agents[0]!.id,
        'agentgate.agent.status': 'disconnected',
      });
      expect(server.attributes).toMatchObject({ 'agentgate.outcome': 'AGENT_DISCONNECTED', 'http.response.status_code': 409 });
      // A refusal that is an answer is not a failure of the gate.
      expect(gate.status.code).toBe(SpanStatusCode.UNSET);
      expect(server.status.code).toBe(SpanStatusCode.UNSET);
      expect(named(spans, 'agentgate.db.read')).toHaveLength(1);
      expect(named(spans, 'agentgate.dial')).toEqual([]);
      expect(named(spans, 'agentgate.proxy')).toEqual([]);
      expect(quiet.requests).toEqual([]);
    } finally {
      await quiet.close();
    }
  });

  it('5xx are errors: an agent answering 503, and an agent that cannot be dialed (AGENT_UNREACHABLE)', async () => {
    const failing = await traced(proxied(ws, '/status?code=503'));
    expect(failing.response.status).toBe(503);
    const proxy = only(failing.spans, 'agentgate.proxy');
    expect(proxy.attributes['http.response.status_code']).toBe(503);
    expect(proxy.status.code).toBe(SpanStatusCode.ERROR);
    expect(only(failing.spans, 'GET /workspaces/{workspaceId}/conn/{path}').status.code).toBe(SpanStatusCode.ERROR);
    expect(only(failing.spans, 'agentgate.gate').status.code).toBe(SpanStatusCode.UNSET);

    const dead = await createWorkspace(t, [{ name: 'main', address: await closedPortAddress() }]);
    await rows.heartbeat(dead.agents[0]!.id);
    const unreachable = await traced(proxied(dead, '/echo'));
    expect(unreachable.response.status, unreachable.text).toBe(502);
    const gate = only(unreachable.spans, 'agentgate.gate');
    const dial = only(unreachable.spans, 'agentgate.dial');
    expect(gate.attributes['agentgate.outcome']).toBe('AGENT_UNREACHABLE');
    expect(gate.status.code).toBe(SpanStatusCode.ERROR);
    expect(dial.attributes).toMatchObject({ 'agentgate.dial.result': 'unreachable', 'agentgate.outcome': 'AGENT_UNREACHABLE' });
    expect(dial.status.code).toBe(SpanStatusCode.ERROR);
    expect(parentOf(dial)).toBe(idOf(gate));
    expect(named(unreachable.spans, 'agentgate.proxy')).toEqual([]);
  });

  it('a WebSocket upgrade carries the proxy span’s traceparent to the agent', async () => {
    let wsAgent: WsAgent | undefined;
    let client: WebSocket | undefined;
    try {
      wsAgent = await startWsAgent();
      const target = await createWorkspace(t, [{ name: 'main', address: wsAgent.address }]);
      await rows.heartbeat(target.agents[0]!.id);
      const caller = callerTracer.startSpan('chat-server socket');
      client = new WebSocket(`${t.url.replace(/^http/, 'ws')}/workspaces/${target.id}/conn/socket`, { headers: callerHeaders(caller) });
      await new Promise<void>((resolve, reject) => {
        client!.once('open', resolve);
        client!.once('error', reject);
      });
      const traceId = caller.spanContext().traceId;
      await eventually(() => named(spansOf(traceId), 'agentgate.proxy').length === 1, 2_000, 'the proxy span');
      const proxy = only(spansOf(traceId), 'agentgate.proxy');
      expect(proxy.attributes).toMatchObject({ 'agentgate.websocket': true, 'http.response.status_code': 101 });
      const upgrade = wsAgent.upgrades.at(-1);
      expect(upgrade?.headers.traceparent).toBe(traceparentOf(proxy));
      expect(upgrade?.headers.tracestate).toBe('chat=t61rcWkgMzE');
      client.close();
      caller.end();
      // The server span of a tunnel ends with the tunnel.
      await eventually(() => spansOf(traceId).some((s) => s.kind === SpanKind.SERVER), 2_000, 'the tunnel’s server span');
      expect(parentOf(proxy)).toBe(idOf(spansOf(traceId).find((s) => s.kind === SpanKind.SERVER)!));
    } finally {
      client?.terminate();
      await wsAgent?.close();
    }
  });

  it('an MCP tools/call: an agentgate.mcp span under the server span, and the agent’s /mcp receives its traceparent', async () => {
    const before = agent.records.length;
    const { response, text, caller, spans } = await traced(mcpCall(t, ws));
    // The echo agent is no MCP server: its 404 is told as NOT_FOUND, in a result the model reads.
    expect(response.status, text).toBe(200);
    expect(text).toContain('"isError":true');
    const server = only(spans, 'POST /workspaces/{workspaceId}/mcp');
    expect(parentOf(server)).toBe(idOf(caller));
    expect(parentOf(only(spans, 'agentgate.gate'))).toBe(idOf(server));
    const mcp = only(spans, 'agentgate.mcp');
    expect(parentOf(mcp)).toBe(idOf(server));
    expect(mcp.kind).toBe(SpanKind.CLIENT);
    expect(mcp.attributes).toMatchObject({ 'rpc.method': 'tools/call', 'agentgate.outcome': 'NOT_FOUND' });
    const seen = agent.records.slice(before).filter((r) => r.url === '/base/mcp');
    expect(seen.length).toBeGreaterThan(0);
    for (const r of seen) expect(r.headers.traceparent).toBe(traceparentOf(mcp));
  });

  it('reads that share a batch each keep a span of their own, told the batch size', async () => {
    const reads = new CurrentAgentReads(t.handle.pool);
    const tracer = provider.getTracer('test');
    const others = [await createWorkspace(t, []), await createWorkspace(t, [])];
    const spans = [ws, ...others].map(() => tracer.startSpan('read'));
    // Asked in one turn of the event loop: one batch, one query.
    const answers = await Promise.all([ws, ...others].map((w, i) => reads.read(w.id, undefined, undefined, spans[i])));
    expect(answers.map((a) => a.kind)).toEqual(['agent', 'no_agent', 'no_agent']);
    for (const span of spans) span.end();
    const ended = exporter.getFinishedSpans().filter((s) => spans.some((x) => idOf(x) === idOf(s)));
    expect(ended).toHaveLength(3);
    for (const s of ended) {
      expect(s.attributes).toMatchObject({ 'agentgate.db.batch.size': 3, 'agentgate.db.batch.sharing': 1 });
      expect(s.events.map((e) => e.name)).toEqual(['agentgate.db.query_sent']);
    }
  });
});

describe('tracing configured by OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', () => {
  it('sends the spans of a proxied call to the collector over OTLP/HTTP, and flushes them on close', async () => {
    // A collector: records what is posted to it.
    const posts: Array<{ url: string; body: string }> = [];
    const collector = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        posts.push({ url: req.url ?? '', body });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const port = (collector.address() as { port: number }).port;
    const exporting = await startTestApp({
      database: t.database,
      env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${port}/otlp/traces`, OTEL_SERVICE_NAME: 'agentgate-under-test' },
    });
    let closed = false;
    try {
      expect(exporting.app.tracing.enabled).toBe(true);
      const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const r = await fetch(`${exporting.url}/workspaces/${ws.id}/conn/echo/exported`, {
        headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, traceparent },
      });
      expect(r.status).toBe(200);
      await r.text();
      // Batched: nothing need have gone yet; closing the app flushes.
      await exporting.close();
      closed = true;
      const body = posts.map((p) => p.body).join('\n');
      expect(posts.length).toBeGreaterThan(0);
      expect(posts.every((p) => p.url === '/otlp/traces')).toBe(true);
      expect(body).toContain('agentgate-under-test');
      expect(body).toContain('0af7651916cd43dd8448eb211c80319c');
      for (const name of ['GET /workspaces/{workspaceId}/conn/{path}', 'agentgate.gate', 'agentgate.db.read', 'agentgate.proxy']) expect(body).toContain(name);
      expect(body).not.toContain(ENV_ADMIN_TOKEN);
    } finally {
      if (!closed) await exporting.close();
      await new Promise((resolve) => collector.close(resolve));
    }
  });
});

describe('tracing off', () => {
  let off: TestApp;
  beforeAll(async () => {
    off = await startTestApp({ database: t.database });
  });
  afterAll(async () => {
    await off?.close();
  });

  const through = async (headers: Record<string, string>) => {
    const before = agent.records.length;
    const r = await fetch(`${off.url}/workspaces/${ws.id}/conn/echo/off`, { headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, ...headers } });
    expect(r.status, await r.text()).toBe(200);
    const record = agent.records.slice(before).find((x) => x.url === '/base/echo/off');
    expect(record).toBeDefined();
    return record!.headers;
  };

  it('passes the caller’s traceparent and tracestate to the agent unchanged, and makes no span', async () => {
    expect(off.app.tracing.enabled).toBe(false);
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    // Tracing off: the app's tracer is never asked for a span (the exporter is not this app's).
    const startSpan = vi.spyOn(off.app.tracing.tracer, 'startSpan');
    const seen = await through({ traceparent, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' });
    expect(seen.traceparent).toBe(traceparent);
    expect(seen.tracestate).toBe('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
    // A later version with more fields: its first four, as version 00 (W3C 3.2.4).
    expect((await through({ traceparent: `cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-next` })).traceparent).toBe(
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    );
    expect(startSpan).not.toHaveBeenCalled();
    startSpan.mockRestore();
  });

  it.each([
    ['not hex', '00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01'],
    ['upper case', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'],
    ['all-zero trace id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['all-zero parent id', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['version 00 with more fields', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra'],
    ['short', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7'],
    ['garbage', 'hello'],
  ])('drops a malformed traceparent (%s), and the tracestate with it', async (_what, traceparent) => {
    const seen = await through({ traceparent, tracestate: 'rojo=00f067aa0ba902b7' });
    expect(seen.traceparent).toBeUndefined();
    expect(seen.tracestate).toBeUndefined();
  });

  it('passes the caller’s traceparent to the agent’s /mcp unchanged on an MCP tools/call', async () => {
    const before = agent.records.length;
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await mcpCall(off, ws)({ authorization: `Bearer ${ENV_ADMIN_TOKEN}`, traceparent });
    expect(r.status, await r.text()).toBe(200);
    const seen = agent.records.slice(before).filter((x) => x.url === '/base/mcp');
    expect(seen.length).toBeGreaterThan(0);
    for (const x of seen) expect(x.headers.traceparent).toBe(traceparent);
  });

  it('drops a malformed tracestate beside a valid traceparent', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';
    const seen = await through({ traceparent, tracestate: 'Not A Key=1' });
    expect(seen.traceparent).toBe(traceparent);
    expect(seen.tracestate).toBeUndefined();
  });

  it('loads no module of the OpenTelemetry SDK: only the API is imported by the app', () => {
    execFileSync(process.execPath, ['scripts/build-if-stale.mjs'], { cwd: root, stdio: 'pipe' });
    // The SDK packages are CommonJS: whatever the app's module graph loads of them is in require.cache.
    const script = `
      import { createRequire } from 'node:module';
      const loaded = () => [...new Set(Object.keys(createRequire(import.meta.url).cache)
        .map((file) => /node_modules\\/(@opentelemetry\\/[^/]+)\\//.exec(file)?.[1])
        .filter(Boolean))].sort();
      await import('./dist/src/server.js');
      const app = loaded();
      // The check can see the SDK: what importing it for tracing on does.
      await import('./dist/src/tracing/sdk.js');
      console.log(JSON.stringify({ app, on: loaded() }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    const { app, on } = JSON.parse(out) as { app: string[]; on: string[] };
    expect(app).toEqual(['@opentelemetry/api']);
    expect(on).toEqual(expect.arrayContaining(['@opentelemetry/sdk-trace-node', '@opentelemetry/exporter-trace-otlp-http']));
  }, 60_000);
});
