// `/workspaces/:workspaceId/mcp` (contract §11): the workspace's MCP endpoint, Streamable HTTP in
// stateless mode (any replica answers any request). The same admission as POST .../conn (token,
// owner scoping, `?agent=`, rate limit, load shedding); what fails before MCP parsing is
// problem+json, a body that is not JSON is a JSON-RPC parse error, and the rest is the front
// door's (src/mcp/front-door.ts). GET and DELETE are 405: a stateless server opens no stream
// and has no session to end.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CallToolRequestSchema, ListToolsRequestSchema, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { ApiError } from '../../domain/errors.js';
import { ownerScope, revocableTokenId, type Principal } from '../../auth/principal.js';
import type { Gate } from '../../gate/gate.js';
import { CallCancelled, CallerGone } from '../../domain/failures.js';
import type { Metrics } from '../../metrics.js';
import { idKey, isToolMethod, methodLabel, type FrontDoor, type McpExchange } from '../../mcp/front-door.js';
import { answerCallerGone, callerSignal } from '../caller.js';
import { logRequest, noteOutcome } from '../plugins/request-log.js';
import { JSONRPC_INTERNAL_ERROR, JSONRPC_INVALID_PARAMS, JSONRPC_INVALID_REQUEST, transportRefuses, jsonRpcError, methodNotAllowed, parseMcpBodies, serveMcpPost, unreadableBody } from '../mcp-http.js';
import { WorkspaceParams, withProblems } from '../schemas.js';
import { AgentQuery } from './conn.js';
import { callerTraceHeaders } from '../../tracing/trace-context.js';
import type { TokenConcurrency } from '../../auth/token-concurrency.js';

export interface McpRouteOptions {
  gate: Gate;
  frontDoor: FrontDoor;
  metrics: Metrics;
  /** The per-token caps: each request to the agent beyond a POST's first takes a slot of its own. */
  concurrency: TokenConcurrency;
  /** How long an answer may wait for a caller that takes no bytes before its response is cut. */
  drainTimeoutMs: number;
}

/** Refusals that mean the endpoint itself does not exist for this token: a plain 404. */
const NOT_VISIBLE = new Set(['WORKSPACE_NOT_FOUND', 'AGENT_NOT_FOUND']);

interface RequestMessage {
  method: string;
  id: RequestId;
}

function isRequest(message: unknown): message is RequestMessage {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as { jsonrpc?: unknown; method?: unknown; id?: unknown };
  return m.jsonrpc === '2.0' && typeof m.method === 'string' && (typeof m.id === 'string' || (typeof m.id === 'number' && Number.isInteger(m.id)));
}

function cancelOf(message: unknown): { requestId: RequestId; reason: string } | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const m = message as { jsonrpc?: unknown; method?: unknown; id?: unknown; params?: { requestId?: unknown; reason?: unknown } };
  if (m.jsonrpc !== '2.0' || m.method !== 'notifications/cancelled' || m.id !== undefined) return undefined;
  const requestId = m.params?.requestId;
  if (typeof requestId !== 'string' && typeof requestId !== 'number') return undefined;
  return { requestId, reason: typeof m.params?.reason === 'string' ? m.params.reason : '' };
}

/** Pure: what is wrong with a tools/list or tools/call request's params, if anything. */
function toolParamsProblem(message: RequestMessage): string | undefined {
  const parsed = (message.method === 'tools/call' ? CallToolRequestSchema : ListToolsRequestSchema).safeParse(message);
  if (parsed.success) return undefined;
  const issue = parsed.error.issues[0];
  return `${issue?.path.map(String).join('.') ?? 'params'}: ${issue?.message ?? 'invalid'}`.slice(0, 200);
}

/** Pure: the request ids a batch uses more than once. */
export function duplicateIds(body: unknown): RequestId[] {
  if (!Array.isArray(body)) return [];
  const seen = new Set<string>();
  const twice = new Map<string, RequestId>();
  for (const message of body) {
    if (!isRequest(message)) continue;
    const key = idKey(message.id);
    if (seen.has(key)) twice.set(key, message.id);
    seen.add(key);
  }
  return [...twice.values()];
}

const tokenKey = (p: Principal) => (p.kind === 'agent' ? `agent:${p.agentId}` : `${p.kind}:${p.tokenId}`);

const McpBody = Type.Unknown({
  description: 'A JSON-RPC message of the Model Context Protocol (or a batch of them). Sent with Accept: application/json, text/event-stream.',
});
const McpStream = Type.String({
  description:
    'text/event-stream of JSON-RPC messages: the progress notifications of the request, then its response. A refused ' +
    'or failed tools/call is a result with isError and _meta["agentgate/error"]; tools/list of a refused agent is its ' +
    'last list with _meta["agentgate/stale"].',
});
const JsonRpcError = Type.Object(
  { jsonrpc: Type.Literal('2.0'), error: Type.Object({ code: Type.Integer(), message: Type.String() }), id: Type.Null() },
  { description: 'JSON-RPC error' },
);

const mcpRoutes: FastifyPluginAsyncTypebox<McpRouteOptions> = async (app, { gate, frontDoor, metrics, concurrency, drainTimeoutMs }) => {
  parseMcpBodies(app);
  const url = '/workspaces/:workspaceId/mcp';

  app.post(
    url,
    {
      config: { access: 'conn' },
      schema: {
        tags: ['chat'],
        summary: "The workspace's MCP endpoint (Streamable HTTP, stateless)",
        description:
          'agentgate answers initialize and ping itself; tools/list and tools/call go to the current agent’s /mcp ' +
          'through the same gate as POST .../conn, on every request. Errors before MCP parsing are problem+json; a body ' +
          'that is not JSON, or not JSON-RPC, is a 400 with a JSON-RPC error (`{"jsonrpc": "2.0", "error": {"code", "message"}, "id": null}`).',
        params: WorkspaceParams,
        querystring: AgentQuery,
        body: McpBody,
        response: withProblems({ 200: McpStream, 202: Type.Null({ description: 'notifications only: accepted' }) }),
      },
    },
    async (request, reply) => {
      const started = performance.now() - reply.elapsedTime;
      const body: unknown = request.body;
      const unreadable = unreadableBody(body);
      if (unreadable) {
        metrics.mcpRequests.inc({ method: 'invalid', outcome: 'invalid' });
        noteOutcome(request, { mcpOutcome: 'invalid' });
        return jsonRpcError(reply, 400, unreadable.code, unreadable.message);
      }
      if (Array.isArray(body) && body.length === 0) {
        metrics.mcpRequests.inc({ method: 'invalid', outcome: 'invalid' });
        noteOutcome(request, { mcpOutcome: 'invalid' });
        return jsonRpcError(reply, 400, JSONRPC_INVALID_REQUEST, 'Invalid Request: an empty batch');
      }
      const duplicated = duplicateIds(body);
      if (duplicated.length > 0) {
        // Two requests under one id cannot be told apart (their answers, a cancel): none is run.
        metrics.mcpRequests.inc({ method: 'invalid', outcome: 'invalid' });
        noteOutcome(request, { mcpOutcome: 'invalid' });
        const ids = duplicated.map((id) => JSON.stringify(id)).join(', ');
        return jsonRpcError(reply, 400, JSONRPC_INVALID_REQUEST, `Invalid Request: the batch uses request id ${ids} more than once; ids must be unique within a batch`);
      }
      const principal = request.principal!;
      const agentName = request.query.agent;
      const exchange = frontDoor.exchange({
        workspaceId: request.params.workspaceId,
        agentName,
        ownerScope: ownerScope(principal),
        tokenKey: tokenKey(principal),
        tokenId: revocableTokenId(principal),
        endpointKey: `${request.params.workspaceId}?agent=${agentName ?? ''}`,
        callerSignal: callerSignal(reply),
        log: request.log,
        startedAt: started,
        trace: request.traceContext,
        callerTrace: callerTraceHeaders(request.headers.traceparent, request.headers.tracestate),
        congested: () => reply.raw.writableNeedDrain,
        takeSlot: () => concurrency.acquire('request', principal),
      });
      const res = reply.raw;
      // First of all: a caller that leaves while the gate reads lets go of what the gate gave.
      res.once('close', () => exchange.dispose());
      const messages: unknown[] = Array.isArray(body) ? body : [body];
      const requests = messages.filter(isRequest);
      exchange.expect(requests.map((r) => r.id));
      for (const message of messages) {
        const cancel = cancelOf(message);
        if (cancel) exchange.cancel(cancel.requestId, cancel.reason);
      }
      exchange.sendUnmatchedCancels();

      try {
        const only = !Array.isArray(body) && requests.length === 1 ? requests[0] : undefined;
        const invalidParams = only && isToolMethod(only.method) ? toolParamsProblem(only) : undefined;
        // A request the transport or the server will refuse (406, 415, invalid params) is not
        // worth a dial: only whether the token sees the workspace is checked first.
        if (only && isToolMethod(only.method) && !transportRefuses(request.headers, body) && invalidParams !== undefined) {
          await checkVisible(gate, exchange);
          // Answered here, as Invalid params (the server would call it an internal error).
          exchange.dispose();
          metrics.mcpRequests.inc({ method: methodLabel(only.method), outcome: 'invalid' });
          noteOutcome(request, { mcpMethod: only.method, mcpOutcome: 'invalid' });
          return reply
            .code(200)
            .type('application/json')
            .send(JSON.stringify({ jsonrpc: '2.0', id: only.id, error: { code: JSONRPC_INVALID_PARAMS, message: `Invalid params: ${invalidParams}` } }));
        }
        if (only && isToolMethod(only.method) && !transportRefuses(request.headers, body)) {
          // The gate first, before the transport: a workspace the token cannot see is a 404 like
          // on every other route, and the dial starts at once.
          const acquired = await exchange.tool(only.id, only.method).acquire();
          if (acquired.kind === 'refused' && NOT_VISIBLE.has(acquired.error.code)) throw acquired.error;
        } else if (requests.length > 0) {
          await checkVisible(gate, exchange);
        }
      } catch (error) {
        // Cancelled during the dial: answered below like every other cancel (nothing for it,
        // counted `cancelled`), the transport reading the request as usual.
        if (!(error instanceof CallCancelled)) {
          exchange.dispose();
          for (const r of requests) exchange.note(r.id, r.method, error instanceof CallerGone ? 'client_closed' : error instanceof ApiError ? error.code : 'INTERNAL');
          count(request, exchange, requests, 'invalid');
          if (error instanceof CallerGone) return answerCallerGone(request, reply);
          throw error;
        }
      }

      if (res.destroyed) {
        // The caller left just as the gate answered: nobody to serve.
        exchange.dispose();
        count(request, exchange, requests, 'client_closed');
        logRequest(request, 499, reply.elapsedTime);
        reply.hijack();
        return;
      }
      res.setHeader('x-request-id', request.id);
      noteOutcome(request, { selfLogged: true });
      res.once('close', () => {
        exchange.dispose();
        // No answer to a request: the caller left first, or the transport refused the HTTP
        // request (a wrong Accept or content type, messages that are not JSON-RPC).
        count(request, exchange, requests, res.writableFinished && res.statusCode >= 400 ? 'invalid' : 'client_closed');
        logRequest(request, res.writableFinished ? res.statusCode : 499, performance.now() - started);
      });
      const responseTo = (message: JSONRPCMessage) => ('id' in message && !('method' in message) ? requests.find((candidate) => candidate.id === message.id) : undefined);
      await serveMcpPost(request, reply, exchange.server(), body, {
        drainTimeoutMs,
        log: request.log,
        // The agent's own JSON-RPC errors pass through as they are: the front door noted them.
        relayed: (message) => {
          const r = responseTo(message);
          return r !== undefined && exchange.outcomes.get(idKey(r.id))?.outcome === 'rpc_error';
        },
        observe: (message) => {
          const r = responseTo(message);
          if (!r) return;
          const noted = exchange.outcomes.get(idKey(r.id))?.outcome;
          const code = (message as { error?: { code?: unknown } }).error?.code;
          if (code === JSONRPC_INTERNAL_ERROR && noted !== 'rpc_error') {
            // Ours, whatever was noted before: an answer that could not be written turns into one.
            exchange.note(r.id, r.method, 'INTERNAL');
          } else if (noted === undefined) {
            exchange.note(r.id, r.method, code === undefined ? 'ok' : 'rpc_error');
          }
        },
        sent: (message) => {
          const r = responseTo(message);
          if (r) exchange.answered(r.id);
        },
      });
    },
  );

  /**
   * Counts each request of the exchange once, and notes them for the log line; a request with no
   * outcome of its own came to `unanswered`.
   */
  function count(request: FastifyRequest, exchange: McpExchange, requests: RequestMessage[], unanswered: string): void {
    const methods: string[] = [];
    const outcomes: string[] = [];
    for (const r of requests) {
      const noted = exchange.outcomes.get(idKey(r.id)) ?? { method: methodLabel(r.method), outcome: unanswered };
      metrics.mcpRequests.inc(noted);
      methods.push(noted.method);
      outcomes.push(noted.outcome);
    }
    if (requests.length === 0 && unanswered === 'invalid') {
      // Messages the transport refused to read (not JSON-RPC, a batch too large...).
      metrics.mcpRequests.inc({ method: 'invalid', outcome: 'invalid' });
      outcomes.push('invalid');
    }
    noteOutcome(request, { mcpMethod: methods.join(',') || undefined, mcpOutcome: outcomes.join(',') || undefined });
  }

  const notAllowed = async (request: FastifyRequest, reply: FastifyReply, what: string) => {
    noteOutcome(request, { mcpOutcome: 'method_not_allowed' });
    return methodNotAllowed(reply, what);
  };
  const refusedSchema = (summary: string) => ({
    tags: ['chat'],
    summary,
    params: WorkspaceParams,
    querystring: AgentQuery,
    response: withProblems({ 405: JsonRpcError }),
  });
  app.get(url, { config: { access: 'conn' }, schema: refusedSchema('405: a stateless MCP server opens no stream on GET') }, (request, reply) =>
    notAllowed(request, reply, 'this MCP endpoint is stateless and opens no stream on GET; POST requests'),
  );
  app.delete(url, { config: { access: 'conn' }, schema: refusedSchema('405: a stateless MCP server has no session to end') }, (request, reply) =>
    notAllowed(request, reply, 'this MCP endpoint is stateless and has no session to end'),
  );
};

/** A 404 for a workspace or agent the token cannot see; other states are the front door's to tell. */
async function checkVisible(gate: Gate, exchange: McpExchange): Promise<void> {
  const { endpoint } = exchange;
  try {
    await gate.status({ workspaceId: endpoint.workspaceId, agentName: endpoint.agentName, ownerScope: endpoint.ownerScope });
  } catch (error) {
    // A stopped workspace, or a database that cannot be read: initialize and ping are still
    // answered (a client's session never breaks over the agent's state), tool requests learn why.
    if (error instanceof ApiError && NOT_VISIBLE.has(error.code)) throw error;
    if (!(error instanceof ApiError)) throw error;
  }
}

export default mcpRoutes;
