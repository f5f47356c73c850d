// agentgate as an MCP client of an agent's `<address>/mcp` (Streamable HTTP), over the agent's
// cached undici pool, every request signed (contract §4.1). One POST per call, answered as JSON or as
// server-sent events, whose notifications (progress) are handed on as they come. The session
// (initialize, then notifications/initialized) is made once per cached connection and kept with
// it: a stateless agent never asks for more, a stateful one gets its Mcp-Session-Id back, and a
// session the agent forgot (404) is made again once. Every phase honours the call's signal; the
// request's headers are bounded by the proxy's headers timeout and the session by the dial bound.
// An MCP server answers with event-stream headers at once and may then take as long as its tool
// does, so the headers bound alone would let a frozen agent hold a call for ever: once the
// response began, the agent may not stay silent (no event, no keep-alive comment; the SDK's
// server sends one every 15 s) for longer than the same headers bound.
import { Readable } from 'node:stream';
import {
  LATEST_PROTOCOL_VERSION,
  SUPPORTED_PROTOCOL_VERSIONS,
  type JSONRPCMessage,
  type JSONRPCNotification,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';
import { mediaTypeEssence } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import type { AgentConnection } from '../transport/agent-transport.js';
import { SIGNATURE_HEADER } from '../auth/gate-signature.js';
import { failureAnswer, McpMessageTooLarge } from '../domain/failures.js';
import { forwardRequest, type Forwarded } from '../proxy/forward.js';
import { SseReader } from './sse.js';
import { MAX_JSON_DEPTH, nestedDeeperThan } from '../domain/json-depth.js';
import type { TraceHeaders } from '../tracing/trace-context.js';

/** The agent answered the request with a JSON-RPC error: its answer, passed on as it is. */
export class AgentRpcError extends Error {
  override name = 'AgentRpcError';
  constructor(
    readonly code: number,
    message: string,
    readonly data: unknown,
  ) {
    super(message);
  }
}

/**
 * The agent answered /mcp, but not as an MCP server: an HTTP error (no MCP server there, a
 * refused signature, too large a request...) or an answer that is not MCP.
 */
export class AgentHttpError extends Error {
  override name = 'AgentHttpError';
  constructor(
    readonly status: number,
    detail: string,
    /** The agent's Retry-After, in seconds, when it sent one. */
    readonly retryAfter?: number,
  ) {
    super(detail);
  }
}

export interface AgentCallOptions {
  /** Aborts the call at every phase; its reason is what the call then throws. */
  signal: AbortSignal;
  /** Bound on the agent's response headers (AGENTGATE_PROXY_HEADERS_TIMEOUT_MS). */
  headersTimeoutMs: number;
  /** Bound on the agent's silence once its response began: no byte for this long ends the call. */
  idleTimeoutMs: number;
  /** Bound on the whole call, session included, whatever the agent sends meanwhile. */
  totalTimeoutMs: number;
  /** Bound on making a session with the agent (the dial bound). */
  sessionTimeoutMs: number;
  /** The largest message (or event) read from the agent. */
  maxMessageBytes: number;
  /** Notifications the agent sends about this request while it runs, with their size in UTF-8. */
  onNotification?: (notification: JSONRPCNotification, bytes: number) => void;
  /** W3C trace context sent with the call's requests: the gate's span, or the caller's (tracing off). */
  trace?: TraceHeaders | undefined;
}

interface AgentSession {
  protocolVersion: string;
  sessionId: string | undefined;
}

interface Exchange {
  status: number;
  sessionId: string | undefined;
  /** The response to the request sent, when the agent gave one. */
  response: JSONRPCMessage | undefined;
  /** Text of an HTTP error answer (start of its body). */
  errorText: string;
  /** Retry-After of an HTTP error answer, in seconds. */
  retryAfter: number | undefined;
}

const sessions = new WeakMap<AgentConnection, Promise<AgentSession>>();
/** How long the agent may keep a response stream open after the response it carried. */
const TRAILING_STREAM_MS = 1_000;
const ERROR_TEXT_BYTES = 4_096;
let nextId = 1;

/**
 * Sends one request to the agent and returns its result. Throws the signal's reason once it
 * aborts; AgentRpcError for the agent's own JSON-RPC error; AgentHttpError for an HTTP error;
 * ApiError AGENT_RESPONSE_TIMEOUT (no headers in time, a response fallen silent, or past the
 * whole bound), AGENT_UNREACHABLE (no socket could be opened) or AGENT_CONNECTION_LOST (the
 * connection broke before the response).
 */
export async function callAgent(conn: AgentConnection, method: string, params: unknown, options: AgentCallOptions): Promise<unknown> {
  const total = options.totalTimeoutMs;
  // The idle bound alone would let an agent that sends a byte now and then hold the call for ever.
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(failureAnswer('AGENTGATE_MCP_TOTAL_TIMEOUT', `the agent did not answer ${method} within ${total} ms`, where(conn))),
    total,
  );
  try {
    return await exchangeOnce(conn, method, params, { ...options, signal: AbortSignal.any([options.signal, deadline.signal]) });
  } finally {
    clearTimeout(timer);
  }
}

async function exchangeOnce(conn: AgentConnection, method: string, params: unknown, options: AgentCallOptions): Promise<unknown> {
  for (let attempt = 0; ; attempt += 1) {
    const session = await abortable(sessionOf(conn, options), options.signal);
    const id = nextId++;
    const exchange = await post(conn, { jsonrpc: '2.0', id, method, params: params as Record<string, unknown> }, id, session, options);
    if (exchange.status === 404 && session.sessionId !== undefined && attempt === 0) {
      // The agent forgot the session (restarted, expired): nothing ran; make a new one, once.
      forgetSession(conn);
      continue;
    }
    if (exchange.status < 200 || exchange.status >= 300) throw httpError(exchange);
    const response = exchange.response;
    if (response === undefined) {
      throw failureAnswer('AGENTGATE_PROXY_CONNECTION_LOST', 'the agent ended its MCP response without answering the call', where(conn));
    }
    if ('error' in response) throw new AgentRpcError(response.error.code, response.error.message, response.error.data);
    return (response as { result: unknown }).result;
  }
}

/** Forgets the session kept for a connection (its next call makes a new one). */
export function forgetSession(conn: AgentConnection): void {
  sessions.delete(conn);
}

const where = (conn: AgentConnection) => ({ workspaceId: conn.target.workspaceId, agentId: conn.agentId });

function httpError(exchange: Exchange): AgentHttpError {
  const said = exchange.errorText.trim();
  return new AgentHttpError(exchange.status, `the agent answered HTTP ${exchange.status} to MCP at /mcp${said ? `: ${said.slice(0, 300)}` : ''}`, exchange.retryAfter);
}

/** The connection's session, made once and shared; a failed attempt is not kept. */
function sessionOf(conn: AgentConnection, options: AgentCallOptions): Promise<AgentSession> {
  let session = sessions.get(conn);
  if (session === undefined) {
    const made = initialize(conn, options);
    session = made;
    sessions.set(conn, made);
    made.catch(() => {
      if (sessions.get(conn) === made) sessions.delete(conn);
    });
  }
  return session;
}

/**
 * initialize and notifications/initialized. Shared by every call on the connection, so it runs
 * under its own bound rather than under the signal of whichever call started it.
 */
async function initialize(conn: AgentConnection, options: AgentCallOptions): Promise<AgentSession> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(failureAnswer('AGENTGATE_DIAL_TIMEOUT', `the agent did not complete MCP's initialize within ${options.sessionTimeoutMs} ms`, where(conn))),
    options.sessionTimeoutMs,
  );
  const bounded: AgentCallOptions = { ...options, signal: controller.signal, headersTimeoutMs: options.sessionTimeoutMs, idleTimeoutMs: options.sessionTimeoutMs };
  delete bounded.onNotification;
  try {
    const id = nextId++;
    const init = await post(
      conn,
      { jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'agentgate', version: '0.1.0' } } },
      id,
      undefined,
      bounded,
    );
    if (init.status < 200 || init.status >= 300) throw httpError(init);
    const response = init.response;
    if (response === undefined) throw failureAnswer('AGENTGATE_PROXY_CONNECTION_LOST', 'the agent ended its MCP response without answering initialize', where(conn));
    if ('error' in response) throw new AgentRpcError(response.error.code, `initialize: ${response.error.message}`, response.error.data);
    const version = (response as { result?: { protocolVersion?: unknown } }).result?.protocolVersion;
    if (typeof version !== 'string' || !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
      throw new AgentHttpError(init.status, `the agent's MCP server speaks protocol version ${JSON.stringify(version)}, which agentgate does not`);
    }
    const session = { protocolVersion: version, sessionId: init.sessionId };
    const initialized = await post(conn, { jsonrpc: '2.0', method: 'notifications/initialized' }, undefined, session, bounded);
    if (initialized.status < 200 || initialized.status >= 300) throw httpError(initialized);
    return session;
  } finally {
    clearTimeout(timer);
  }
}

/** One POST to the agent's /mcp; resolves once the response to `id` arrived (or the body ended). */
async function post(conn: AgentConnection, message: JSONRPCMessage, id: RequestId | undefined, session: AgentSession | undefined, options: AgentCallOptions): Promise<Exchange> {
  const path = `${conn.basePath}/mcp`;
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'content-length': String(body.length),
    [SIGNATURE_HEADER]: conn.sign('POST', path),
  };
  if (options.trace) {
    headers.traceparent = options.trace.traceparent;
    if (options.trace.tracestate !== undefined) headers.tracestate = options.trace.tracestate;
  }
  if (session?.sessionId !== undefined) headers['mcp-session-id'] = session.sessionId;
  if (session !== undefined) headers['mcp-protocol-version'] = session.protocolVersion;
  let forwarded: Forwarded;
  try {
    forwarded = await forwardRequest({
      conn,
      method: 'POST',
      path,
      headers,
      body: Readable.from([body]),
      bodyLimit: body.length,
      headersTimeoutMs: options.headersTimeoutMs,
      callerSignal: options.signal,
    });
  } catch (error) {
    // forwardRequest names every abort CallerGone; the signal's own reason says which it was.
    if (options.signal.aborted) throw options.signal.reason;
    throw error;
  }
  const sessionHeader = forwarded.headers['mcp-session-id'];
  const exchange: Exchange = {
    status: forwarded.statusCode,
    sessionId: typeof sessionHeader === 'string' ? sessionHeader : undefined,
    response: undefined,
    errorText: '',
    retryAfter: retryAfterSeconds(headerText(forwarded.headers['retry-after'])),
  };
  const onAbort = () => forwarded.abort(options.signal.reason as Error);
  if (options.signal.aborted) onAbort();
  else options.signal.addEventListener('abort', onAbort, { once: true });
  let silent = false;
  const idle = setTimeout(() => {
    silent = true;
    forwarded.abort(new Error('the agent fell silent'));
  }, options.idleTimeoutMs);
  // Every byte counts, keep-alive comments included: an agent at work may send nothing else.
  forwarded.body.on('data', () => idle.refresh());
  try {
    if (exchange.status === 202 || exchange.status === 204) {
      forwarded.body.resume();
      return exchange;
    }
    const type = mediaTypeEssence(headerText(forwarded.headers['content-type']));
    if (exchange.status < 200 || exchange.status >= 300) {
      exchange.errorText = (await readText(forwarded.body, ERROR_TEXT_BYTES, false)).replace(/\s+/g, ' ');
      return exchange;
    }
    if (type === 'application/json') {
      const text = await readText(forwarded.body, options.maxMessageBytes, true);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new AgentHttpError(exchange.status, 'the agent answered MCP at /mcp with a body that is not JSON');
      }
      checkDepth(parsed, exchange.status);
      for (const candidate of [parsed].flat()) {
        if (isResponseTo(candidate, id)) exchange.response = candidate;
      }
      return exchange;
    }
    if (type === 'text/event-stream') {
      exchange.response = await readEvents(forwarded, id, options);
      return exchange;
    }
    forwarded.abort(new Error('unexpected content type'));
    throw new AgentHttpError(exchange.status, `the agent answered MCP at /mcp with content type ${JSON.stringify(type ?? '')}`);
  } catch (error) {
    if (options.signal.aborted) throw options.signal.reason;
    if (error instanceof AgentHttpError) throw error;
    forwarded.abort(error as Error);
    if (error instanceof McpMessageTooLarge) {
      throw failureAnswer(
        'AGENTGATE_MCP_MESSAGE_TOO_LARGE',
        `${error.message}, the most agentgate carries (AGENTGATE_BODY_LIMIT_BYTES); the tool's output must be made smaller`,
        where(conn),
      );
    }
    if (silent) {
      throw failureAnswer(
        'AGENTGATE_MCP_RESPONSE_SILENT',
        `the agent's MCP response sent nothing (no event, no keep-alive) for ${options.idleTimeoutMs} ms before answering`,
        where(conn),
      );
    }
    throw failureAnswer('AGENTGATE_PROXY_CONNECTION_LOST', 'the connection to the agent broke before its MCP response arrived', where(conn));
  } finally {
    clearTimeout(idle);
    options.signal.removeEventListener('abort', onAbort);
  }
}

/** An agent's message nested too deep to walk: an answer that is not MCP, refused before anything reads it. */
function checkDepth(message: unknown, status: number): void {
  if (nestedDeeperThan(message, MAX_JSON_DEPTH)) {
    throw new AgentHttpError(status, `the agent's MCP answer nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep`);
  }
}

const headerText = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

/** Retry-After given in seconds (an HTTP date is not worth a clock comparison here). */
function retryAfterSeconds(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,6}$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

function isResponseTo(message: unknown, id: RequestId | undefined): message is JSONRPCMessage {
  if (id === undefined || typeof message !== 'object' || message === null) return false;
  const m = message as { jsonrpc?: unknown; id?: unknown; result?: unknown; error?: unknown };
  return m.jsonrpc === '2.0' && m.id === id && (m.result !== undefined || (typeof m.error === 'object' && m.error !== null));
}

function isNotification(message: unknown): message is JSONRPCNotification {
  if (typeof message !== 'object' || message === null) return false;
  const m = message as { jsonrpc?: unknown; method?: unknown; id?: unknown };
  return m.jsonrpc === '2.0' && typeof m.method === 'string' && m.id === undefined;
}

/**
 * The body as text, up to `limit` bytes: beyond it, an error when `strict`, else what came up to
 * the limit; either way the rest is not read.
 */
function readText(body: Readable, limit: number, strict: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    body.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      chunks.push(chunk);
      if (size <= limit) return;
      done = true;
      body.destroy();
      if (strict) reject(new McpMessageTooLarge(limit));
      else resolve(Buffer.concat(chunks).subarray(0, limit).toString('utf8'));
    });
    body.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    body.on('error', reject);
  });
}

/**
 * Reads the agent's event stream: notifications are handed on as they arrive, and the call
 * resolves with the response to `id` (or undefined when the stream ended without one). A stream
 * the agent keeps open after its response is given up shortly after.
 */
function readEvents(forwarded: Forwarded, id: RequestId | undefined, options: AgentCallOptions): Promise<JSONRPCMessage | undefined> {
  const reader = new SseReader(options.maxMessageBytes);
  const body = forwarded.body;
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      outcome();
    };
    const onData = (chunk: Buffer) => {
      if (settled) return;
      let events: string[];
      try {
        events = reader.push(chunk);
      } catch (error) {
        settle(() => reject(asError(error)));
        return;
      }
      for (const data of events) {
        let message: unknown;
        try {
          message = JSON.parse(data);
        } catch {
          continue; // not a message: nothing of ours
        }
        try {
          checkDepth(message, forwarded.statusCode);
        } catch (error) {
          settle(() => reject(asError(error)));
          return;
        }
        if (isResponseTo(message, id)) {
          settle(() => resolve(message));
          const trailing = setTimeout(() => forwarded.abort(new Error('the agent kept its response stream open')), TRAILING_STREAM_MS);
          trailing.unref();
          body.once('close', () => clearTimeout(trailing));
          return;
        }
        if (isNotification(message)) options.onNotification?.(message, Buffer.byteLength(data));
      }
    };
    body.on('data', onData);
    body.once('end', () => settle(() => resolve(undefined)));
    // The listener stays: a stream given up after the response still emits its error.
    body.on('error', (error) => settle(() => reject(error)));
  });
}

/** Waits for `promise` unless `signal` aborts first (then throws its reason). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(asError(error));
      },
    );
  });
}

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));
