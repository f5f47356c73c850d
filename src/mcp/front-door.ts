// The MCP front door (contract §11): agentgate is the MCP server a client talks to, one stateless
// server per HTTP request. initialize and ping are answered here, whatever the agent's state;
// tools/list and tools/call go through the gate (fresh read, strong and weak signals, shared
// bounded dials) to the agent's /mcp on every request. A refusal, or an agent that cannot
// answer, is a tool result the model can read (results.ts), never a transport error; while the
// agent is refused, tools/list serves its last list, marked stale.
import type { FastifyBaseLogger } from 'fastify';
import { SpanKind, type Context, type Span } from '@opentelemetry/api';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { jsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/types.js';
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ErrorCode,
  type CallToolResult,
  type JSONRPCNotification,
  type ListToolsResult,
  type RequestId,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { ApiError, ERROR_CATALOGUE, type ProblemExtras } from '../domain/errors.js';
import type { Gate, GateSuccess } from '../gate/gate.js';
import { disconnectedSeconds } from '../gate/classify.js';
import { AgentHttpError, AgentRpcError, callAgent, forgetSession } from './agent-client.js';
import { leavesConnectionSuspect } from '../gate/decide.js';
import { cancelKey, type RunningCall, type RunningCalls } from './calls.js';
import type { CancelRelay } from './cancel-relay.js';
import { CallCancelled, CallerGone, WorkEnded } from '../domain/failures.js';
import type { InFlight, Registration } from '../gate/in-flight.js';
import type { CancelNotice } from '../domain/events.js';
import { agentAnswerCode, agentAnswerDetail, errorMeta, errorResult, validResult, ERROR_META_KEY, STALE_META_KEY } from './results.js';
import type { ToolLists } from './tool-lists.js';
import { Turns } from './turns.js';
import { ATTR, childSpan, endSpan, failureOutcome, type Tracing } from '../tracing/tracing.js';
import type { TraceHeaders } from '../tracing/trace-context.js';

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;
export type ToolMethod = 'tools/list' | 'tools/call';

/** The methods counted by name in agentgate_mcp_requests_total; others count as `other`. */
const COUNTED_METHODS = new Set(['initialize', 'ping', 'tools/list', 'tools/call']);
export const methodLabel = (method: string): string => (COUNTED_METHODS.has(method) ? method : 'other');

export const isToolMethod = (method: unknown): method is ToolMethod => method === 'tools/list' || method === 'tools/call';

const INSTRUCTIONS =
  "The tools are those of the workspace's agent, reached through agentgate on every call. When the agent " +
  'cannot run a tool (stopped, disconnected, unreachable), the result has isError set and its text says what ' +
  'happened and what to do; _meta["agentgate/error"] carries the code.';

export interface FrontDoorOptions {
  gate: Gate;
  config: Config;
  metrics: Metrics;
  calls: RunningCalls;
  /** Where every call registers the authority it rests on, so that it ends when that does. */
  inFlight: InFlight;
  lists: ToolLists;
  validator: jsonSchemaValidator;
  tracing: Tracing;
  /**
   * Sends the cancels of one request that matched no call here to every replica (the call may
   * run on another: stateless, no affinity). Fire and forget: it reports its own failures.
   */
  cancelElsewhere?: CancelRelay | undefined;
}

/** Cancels one HTTP request may send to the other replicas (a client sends one per request). */
export const MAX_REMOTE_CANCELS = 8;

/** Progress bytes one response may queue behind a caller that is not reading. */
export const MAX_QUEUED_PROGRESS_BYTES = 1024 * 1024;

/**
 * Requests to the agent one HTTP request (a batch) runs at once. Each holds a turn from the gate's
 * decision until its answer was written to the caller, so a caller that does not read stops its
 * batch after this many answers: what waits for it is bounded by this many agent messages.
 */
export const MAX_AGENT_REQUESTS_AT_ONCE = 4;

/** Who calls which endpoint, for one HTTP request. */
export interface Endpoint {
  workspaceId: string;
  agentName: string | undefined;
  ownerScope: string | null;
  /** The token, as cancellation scope. */
  tokenKey: string;
  /** The API token's id, whose revocation ends the calls; null for one that cannot be revoked. */
  tokenId: string | null;
  /** The endpoint's path and query, as cancellation scope. */
  endpointKey: string;
  /** Aborted when the caller's HTTP request goes away. */
  callerSignal: AbortSignal;
  log: FastifyBaseLogger;
  /** When the HTTP request began (performance.now() time): the gate's bound counts from it. */
  startedAt: number;
  /** The request's server span (tracing on): the gate's spans are made under it. */
  trace?: Context | null | undefined;
  /** The caller's well-formed trace headers, passed to the agent as they are when tracing is off. */
  callerTrace?: TraceHeaders | undefined;
  /**
   * Whether the caller's response is not taking what is written to it now (its socket wants a
   * drain): the agent's progress is then dropped rather than queued without bound.
   */
  congested?: (() => boolean) | undefined;
  /**
   * Takes one more of the token's request slots (throws RATE_LIMITED over its cap), for each
   * request to the agent beyond the one the HTTP request's own slot covers: every tool call
   * counts against the token's cap, batched or not.
   */
  takeSlot?: (() => () => void) | undefined;
}

export class FrontDoor {
  constructor(readonly options: FrontDoorOptions) {}

  /** The state of one HTTP request's exchange. */
  exchange(endpoint: Endpoint): McpExchange {
    return new McpExchange(this.options, endpoint);
  }
}

/**
 * One HTTP request's messages: the tool requests it carries (acquired through the gate before
 * the transport parses the body when there is exactly one, so that a workspace the token cannot
 * see is a plain 404), the cancels it carries, its server, and what each request came to.
 */
export class McpExchange {
  readonly #tools = new Map<string, ToolRequest>();
  /** Outcome per request id, for the metric and the log line. */
  readonly outcomes = new Map<string, { method: string; outcome: string }>();
  /** The requests of this HTTP request still owed an answer, and those cancelled (owed none). */
  readonly #owed = new Set<string>();
  readonly #cancelled = new Set<string>();
  readonly #unmatched: CancelNotice[] = [];
  /** Progress handed on since the caller's response last took writes (admitProgress). */
  #queuedWhileCongested = 0;
  #ending = false;
  #server: McpServer | undefined;
  readonly #turns = new Turns(MAX_AGENT_REQUESTS_AT_ONCE);
  /** The HTTP request's own slot is not carrying a request to the agent now. */
  #ownSlotFree = true;

  constructor(
    private readonly options: FrontDoorOptions,
    readonly endpoint: Endpoint,
  ) {}

  /** The tool request with this id, made on first use. */
  tool(id: RequestId, method: ToolMethod): ToolRequest {
    const key = idKey(id);
    let tool = this.#tools.get(key);
    if (!tool) {
      tool = new ToolRequest(this.options, this, id, method);
      this.#tools.set(key, tool);
    }
    return tool;
  }

  /**
   * Applies a `notifications/cancelled` to the running calls of the same token and endpoint:
   * this replica's, or when none matches here, every replica's.
   */
  cancel(requestId: RequestId, reason: string): void {
    const key = cancelKey(this.endpoint.tokenKey, this.endpoint.endpointKey, requestId);
    const result = this.options.calls.cancel(key, reason);
    if (result === 'ambiguous') {
      this.endpoint.log.info({ requestId }, 'notifications/cancelled matches several running calls of this token; none cancelled');
      return;
    }
    // A request of this same POST is not running yet, and the server cancels it itself.
    if (result === 'cancelled' || this.#owed.has(idKey(requestId)) || !this.options.cancelElsewhere) return;
    if (this.#unmatched.length >= MAX_REMOTE_CANCELS) {
      this.endpoint.log.info({ requestId }, `more than ${MAX_REMOTE_CANCELS} cancels in one request match no call here; the rest are not sent on`);
      return;
    }
    this.#unmatched.push({ key, reason });
  }

  /** Sends this request's cancels that matched no call here to every replica, in one notice. */
  sendUnmatchedCancels(): void {
    if (this.#unmatched.length === 0) return;
    this.options.cancelElsewhere?.(this.endpoint.tokenKey, this.#unmatched.splice(0));
  }

  /**
   * Whether a progress notification of `bytes` may be handed to the transport, which queues what
   * it is given without limit. While the caller's response wants a drain (the caller reads
   * slower than the agents send), at most MAX_QUEUED_PROGRESS_BYTES more are handed on for the
   * whole response, its batch's calls together; the rest is dropped.
   */
  admitProgress(bytes: number): boolean {
    if (!this.endpoint.congested?.()) {
      // Taking writes again: what was queued has reached the socket.
      this.#queuedWhileCongested = 0;
      return true;
    }
    if (this.#queuedWhileCongested + bytes > MAX_QUEUED_PROGRESS_BYTES) return false;
    this.#queuedWhileCongested += bytes;
    return true;
  }

  /**
   * A turn to send a request to the agent, with the token slot it counts against: the HTTP
   * request's own while no other request of it uses that, otherwise one more. Resolves with its
   * release; rejects with the signal's reason, or RATE_LIMITED over the token's cap.
   */
  async takeTurn(signal: AbortSignal): Promise<() => void> {
    const turn = await this.#turns.take(signal);
    let slot: () => void;
    try {
      if (this.#ownSlotFree) {
        this.#ownSlotFree = false;
        slot = () => (this.#ownSlotFree = true);
      } else {
        slot = this.endpoint.takeSlot?.() ?? (() => undefined);
      }
    } catch (error) {
      turn();
      throw error;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      slot();
      turn();
    };
  }

  /** The requests this HTTP request carries (its response ends once each is answered or cancelled). */
  expect(ids: readonly RequestId[]): void {
    for (const id of ids) this.#owed.add(idKey(id));
  }

  /** A response to `id` was sent: its turn goes to the next request. */
  answered(id: RequestId): void {
    const key = idKey(id);
    this.#tools.get(key)?.endTurn();
    this.#owed.delete(key);
    this.#endIfOnlyCancelled();
  }

  /**
   * `id` was cancelled: nothing is owed for it. Its siblings in a batch are still answered; the
   * response ends once they are (the transport would wait for the cancelled one for ever).
   */
  cancelled(id: RequestId): void {
    const key = idKey(id);
    this.#tools.get(key)?.endTurn();
    this.#owed.delete(key);
    this.#cancelled.add(key);
    this.#endIfOnlyCancelled();
  }

  #endIfOnlyCancelled(): void {
    if (this.#cancelled.size > 0 && this.#owed.size === 0) this.endResponse();
  }

  /** The response is ending (or ended): a handler's signal aborting now is not a cancel. */
  get ending(): boolean {
    return this.#ending || this.endpoint.callerSignal.aborted;
  }

  note(id: RequestId, method: string, outcome: string): void {
    this.outcomes.set(idKey(id), { method: methodLabel(method), outcome });
  }

  /** The server for this request's transport. */
  server(): McpServer {
    if (this.#server) return this.#server;
    const mcp = new McpServer(
      { name: 'agentgate', version: '0.1.0' },
      { instructions: INSTRUCTIONS, jsonSchemaValidator: this.options.validator },
    );
    const server = mcp.server;
    server.registerCapabilities({ tools: {} });
    server.setRequestHandler(ListToolsRequestSchema, (request, extra) => this.tool(extra.requestId, 'tools/list').list(request.params, extra));
    server.setRequestHandler(CallToolRequestSchema, (request, extra) => this.tool(extra.requestId, 'tools/call').call(request.params, extra));
    this.#server = mcp;
    return mcp;
  }

  /** Stops answering: the responses still owed are not sent, and the response ends. */
  endResponse(): void {
    this.#ending = true;
    void this.#server?.close().catch(() => undefined);
  }

  /** The exchange is over: leases, registrations and turns still held are let go. */
  dispose(): void {
    for (const tool of this.#tools.values()) {
      tool.dispose();
      tool.endTurn();
    }
  }
}

/** A request id as a map key: the number 1 and the string "1" are two ids. */
export const idKey = (id: RequestId) => `${typeof id}:${String(id)}`;

type Acquired = { kind: 'lease'; success: GateSuccess } | { kind: 'refused'; error: ApiError };

/** One tools/list or tools/call: the gate, then the agent. */
export class ToolRequest {
  readonly #running: RunningCall;
  /** The call in the work in flight: its authority ending (or its agent's going) ends it. */
  readonly #work: Registration;
  readonly #ended = new AbortController();
  /** A cancel the server's own signal for the request carried (a cancel in the same POST). */
  readonly #local = new AbortController();
  /** The caller left, cancelled, or the agent went away. */
  readonly #signal: AbortSignal;
  #acquired: Promise<Acquired> | undefined;
  #lease: GateSuccess['lease'] | undefined;
  #disposed = false;
  /** Held from before the gate until the answer was written (or never will be). */
  #turn: (() => void) | undefined;

  constructor(
    private readonly options: FrontDoorOptions,
    private readonly exchange: McpExchange,
    readonly id: RequestId,
    readonly method: ToolMethod,
  ) {
    const { endpoint } = exchange;
    this.#running = options.calls.open(cancelKey(endpoint.tokenKey, endpoint.endpointKey, id));
    this.#work = options.inFlight.register({ tokenId: endpoint.tokenId, ownerScope: endpoint.ownerScope, workspaceId: endpoint.workspaceId });
    this.#work.onEnd((ending) => this.#ended.abort(new WorkEnded(ending)));
    this.#signal = AbortSignal.any([endpoint.callerSignal, this.#running.signal, this.#local.signal, this.#ended.signal]);
  }

  /**
   * The gate's decision for this request (once): a lease, or the refusal as an ApiError.
   * Throws CallerGone when the caller left or cancelled first.
   */
  acquire(): Promise<Acquired> {
    this.#acquired ??= this.#acquire();
    return this.#acquired;
  }

  async #acquire(): Promise<Acquired> {
    const { endpoint } = this.exchange;
    try {
      this.#turn = await this.exchange.takeTurn(this.#signal);
    } catch (error) {
      if (error instanceof ApiError) {
        this.options.metrics.refusals.inc({ code: error.code });
        return { kind: 'refused', error };
      }
      const ended = this.#endedBeforeAgent();
      if (ended) return ended;
      // The gate's own abort reason for a caller that left or cancelled while waiting.
      if (this.#signal.aborted && this.#signal.reason instanceof CallCancelled) throw this.#signal.reason;
      throw new CallerGone();
    }
    if (this.#disposed) {
      this.endTurn();
      throw new CallerGone();
    }
    try {
      const success = await this.options.gate.connect({
        workspaceId: endpoint.workspaceId,
        agentName: endpoint.agentName,
        ownerScope: endpoint.ownerScope,
        signal: this.#signal,
        log: endpoint.log,
        startedAt: endpoint.startedAt,
        trace: endpoint.trace,
      });
      if (this.#disposed || this.#signal.aborted) {
        // The caller left (or cancelled) while the gate read: a cached connection may still have
        // been handed out, and nobody will use it.
        success.lease.release();
        throw this.#signal.aborted ? (this.#signal.reason as Error) : new CallerGone();
      }
      this.#lease = success.lease;
      this.#work.reached(success.agent.id, success.agent.buildId);
      return { kind: 'lease', success };
    } catch (error) {
      if (error instanceof ApiError) return { kind: 'refused', error };
      const ended = this.#endedBeforeAgent();
      if (ended) return ended;
      if (error instanceof CallerGone || error instanceof CallCancelled) {
        // The gate names every abort CallerGone; a cancel stays a cancel.
        if (this.#signal.aborted && this.#signal.reason instanceof CallCancelled) throw this.#signal.reason;
      }
      throw error;
    }
  }

  /** The call's authority ended before it reached its agent: refused as a new call would be. */
  #endedBeforeAgent(): Acquired | undefined {
    const reason: unknown = this.#signal.aborted ? this.#signal.reason : undefined;
    if (!(reason instanceof WorkEnded)) return undefined;
    return { kind: 'refused', error: reason.answer({ workspaceId: this.exchange.endpoint.workspaceId }) };
  }

  async list(params: unknown, extra: Extra): Promise<ListToolsResult> {
    const outcome = await this.#run(params, extra);
    const where = { workspaceId: this.exchange.endpoint.workspaceId, agentName: this.exchange.endpoint.agentName };
    if (outcome.kind === 'answered') {
      const result = outcome.result as ListToolsResult;
      const cursor = (params as { cursor?: unknown } | undefined)?.cursor;
      if (Array.isArray(result.tools) && cursor === undefined) this.options.lists.remember({ ...where, agentId: outcome.agentId, ownerId: outcome.ownerId }, result.tools);
      this.#note('ok');
      return result;
    }
    const { error } = outcome;
    this.#note(error.code);
    // Another owner's list never: a refusal may come before the gate could check visibility.
    const tools = this.options.lists.recall({ ...where, agentId: error.extras.agentId }, this.exchange.endpoint.ownerScope) ?? [];
    return { tools, _meta: { [STALE_META_KEY]: true, [ERROR_META_KEY]: errorMeta(error) } };
  }

  async call(params: unknown, extra: Extra): Promise<CallToolResult> {
    const outcome = await this.#run(params, extra);
    if (outcome.kind === 'answered') {
      const result = outcome.result as CallToolResult;
      this.#note(result.isError === true ? 'tool_error' : 'ok');
      return result;
    }
    this.#note(outcome.error.code);
    return errorResult(outcome.error);
  }

  /** The answer was written, or never will be: the turn and its token slot are let go. */
  endTurn(): void {
    this.#turn?.();
    this.#turn = undefined;
  }

  /** Lets go of the lease and the registration (idempotent). */
  dispose(): void {
    this.#disposed = true;
    this.#lease?.release();
    this.#lease = undefined;
    this.#running.close();
    this.#work.close();
  }

  #note(outcome: string): void {
    this.exchange.note(this.id, this.method, outcome);
  }

  /**
   * The gate, then the agent. Resolves with the agent's result or with the error the model is
   * to read; throws (a JSON-RPC error, or nothing sent) for the agent's own JSON-RPC errors and
   * for calls the caller gave up.
   */
  async #run(params: unknown, extra: Extra): Promise<{ kind: 'answered'; result: unknown; agentId: string; ownerId: string } | { kind: 'failed'; error: ApiError }> {
    // The server aborts a handler's signal on a cancel it read in this same POST, and when it
    // closes: the first is a cancel (the dial included), the second the response ending.
    const onServerAbort = () => {
      const reason: unknown = extra.signal.reason;
      this.#local.abort(this.exchange.ending ? new CallerGone() : new CallCancelled(typeof reason === 'string' && reason ? reason : 'the caller cancelled the request'));
    };
    if (extra.signal.aborted) onServerAbort();
    else extra.signal.addEventListener('abort', onServerAbort, { once: true });
    try {
      return await this.#gateThenAgent(params, extra);
    } finally {
      extra.signal.removeEventListener('abort', onServerAbort);
      this.dispose();
    }
  }

  async #gateThenAgent(params: unknown, extra: Extra): Promise<{ kind: 'answered'; result: unknown; agentId: string; ownerId: string } | { kind: 'failed'; error: ApiError }> {
    const signal = this.#signal;
    let acquired: Acquired;
    try {
      acquired = await this.acquire();
    } catch (error) {
      return this.#abandoned(error, signal);
    }
    if (acquired.kind === 'refused') return { kind: 'failed', error: acquired.error };
    const { success } = acquired;
    const conn = success.lease.conn;
    const c = success.classification;
    const extras: ProblemExtras = {
      workspaceId: success.workspaceId,
      agentId: success.agent.id,
      agentStatus: c.status,
      disconnectedSeconds: disconnectedSeconds(c),
    };
    const { config } = this.options;
    const callerToken = (params as { _meta?: { progressToken?: unknown } } | undefined)?._meta?.progressToken;
    // The call to the agent's /mcp (tracing on): the agent is told this span as its parent.
    const { tracing } = this.options;
    const trace = this.exchange.endpoint.trace;
    const span = childSpan(tracing, trace, 'agentgate.mcp', SpanKind.CLIENT);
    span?.setAttributes({ 'rpc.system': 'jsonrpc', 'rpc.method': this.method, [ATTR.agentId]: success.agent.id });
    try {
      const result = await traced(span, callAgent(conn, this.method, params, {
        trace: span ? tracing.headersFor(span) : this.exchange.endpoint.callerTrace,
        signal,
        headersTimeoutMs: config.proxyHeadersTimeoutMs,
        idleTimeoutMs: config.proxyHeadersTimeoutMs,
        // A list is quick to make: a session to make, then the headers bound. A tool may run
        // long, but not for ever, whatever its agent trickles (AGENTGATE_MCP_CALL_TIMEOUT_MS).
        totalTimeoutMs: this.method === 'tools/list' ? config.dialTimeoutMs + config.proxyHeadersTimeoutMs : config.mcpCallTimeoutMs,
        sessionTimeoutMs: config.dialTimeoutMs,
        maxMessageBytes: config.bodyLimitBytes,
        onNotification: (notification, bytes) => this.#relay(notification, bytes, callerToken, extra),
      }));
      const valid = validResult(this.method, result);
      if (!valid.ok) {
        // What the model reads says what the agent did wrong, never agentgate's own failure.
        const detail = `the agent's answer to ${this.method} is not a valid MCP result (${valid.problem})`;
        return { kind: 'failed', error: new ApiError('INVALID_REQUEST', agentAnswerDetail('INVALID_REQUEST', detail), extras) };
      }
      return { kind: 'answered', result: valid.result, agentId: success.agent.id, ownerId: success.ownerId };
    } catch (error) {
      if (signal.aborted) {
        const reason: unknown = signal.reason;
        if (reason instanceof WorkEnded) return { kind: 'failed', error: reason.answer(extras) };
        return this.#abandoned(error, signal);
      }
      if (error instanceof AgentRpcError) {
        this.#note('rpc_error');
        throw new McpError(error.code, error.message, error.data);
      }
      if (error instanceof AgentHttpError) {
        // The agent answered, just not as an MCP server: its connection is fine.
        const code = agentAnswerCode(error.status);
        const retry = error.retryAfter === undefined || code !== 'RATE_LIMITED' ? {} : { retryAfter: error.retryAfter };
        return { kind: 'failed', error: new ApiError(code, agentAnswerDetail(code, error.message), { ...extras, ...retry }) };
      }
      if (error instanceof ApiError) {
        if (leavesConnectionSuspect(error.code)) {
          // The pool's sockets are suspect (broken, or held by an agent that fell silent): the
          // next call dials afresh and makes a new session.
          success.lease.markBroken();
          forgetSession(conn);
        }
        return { kind: 'failed', error: new ApiError(error.code, error.detail, { ...extras, ...error.extras, agentStatus: c.status }) };
      }
      throw error;
    }
  }

  /** The caller left or cancelled: nothing is answered (the transport sends nothing for it). */
  #abandoned(error: unknown, signal: AbortSignal): never {
    const reason: unknown = signal.aborted ? signal.reason : error;
    if (reason instanceof CallCancelled) {
      this.#note('cancelled');
      // Nothing is owed for it; the response ends once its siblings (if any) are answered.
      this.exchange.cancelled(this.id);
      throw new McpError(ErrorCode.ConnectionClosed, 'the request was cancelled');
    }
    if (reason instanceof CallerGone || signal.aborted) {
      this.#note('client_closed');
      throw new McpError(ErrorCode.ConnectionClosed, 'the caller went away');
    }
    throw error;
  }

  /** The agent's progress on this request, passed on under the caller's own token while the caller keeps up. */
  #relay(notification: JSONRPCNotification, bytes: number, callerToken: unknown, extra: Extra): void {
    if (notification.method !== 'notifications/progress' || callerToken === undefined) return;
    const params = notification.params as { progressToken?: unknown; progress?: unknown } | undefined;
    if (!params || params.progressToken !== callerToken || typeof params.progress !== 'number') return;
    if (!this.exchange.admitProgress(bytes)) {
      this.options.metrics.mcpProgressDropped.inc();
      return;
    }
    void extra.sendNotification(notification as ServerNotification).catch(() => undefined);
  }
}

/** Ends the agent call's span (tracing on) with how the call went: answered, or why not. */
async function traced<T>(span: Span | undefined, call: Promise<T>): Promise<T> {
  if (!span) return call;
  try {
    const value = await call;
    endSpan(span, { code: 'ok' });
    return value;
  } catch (error) {
    if (error instanceof AgentHttpError) endSpan(span, { code: agentAnswerCode(error.status), status: error.status });
    else if (error instanceof AgentRpcError) endSpan(span, { code: 'rpc_error' });
    else if (error instanceof WorkEnded) endSpan(span, { code: error.answerCode, status: ERROR_CATALOGUE[error.answerCode].status });
    else endSpan(span, failureOutcome(error));
    throw error;
  }
}
