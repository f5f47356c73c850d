// WebSocket upgrades on `/workspaces/:id/conn/*` (SPEC 4.1). An upgrade request goes through
// the app's routing like any other, so the same admission applies (draining, authentication,
// per-token caps, rate limit, load shedding); the proxy route then hands it here once the gate
// has a connection: the upgrade is forwarded (signed) to the agent on a socket of its own and
// the two sockets are joined; either side closing closes the other.
import { ServerResponse, STATUS_CODES, request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CallerGone, type GateSuccess } from '../gate/gate.js';
import type { Registration } from '../gate/in-flight.js';
import { ApiError } from '../domain/errors.js';
import { WorkEnded } from '../domain/work-ended.js';
import type { Metrics } from '../metrics.js';
import { downstreamResponseHeaders, withheldFromCaller, upstreamRequestHeaders } from './headers.js';
import type { AgentConnection } from '../gate/agent-connection.js';
import { createConnector, neverConnected } from '../gate/connector.js';
import { failureAnswer } from '../domain/failure-codes.js';
import { forwardedFor, type TrustProxy } from './trust-proxy.js';
import { SpanKind } from '@opentelemetry/api';
import { ATTR, TRACING_OFF, endSpan, failureOutcome, type Tracing } from '../tracing/tracing.js';

/** A request that asks to become a WebSocket (any route; the proxy route is the one that can). */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return String(req.headers.upgrade ?? '').toLowerCase() === 'websocket';
}

export interface WebSocketProxyOptions {
  headersTimeoutMs: number;
  /** A tunnel with no data either way for this long is closed. */
  idleTimeoutMs: number;
  /** A tunnel older than this is closed (0: no limit). */
  maxLifetimeMs: number;
  /** The reverse proxies whose forwarding headers are believed. */
  trust: TrustProxy;
  metrics: Metrics;
  tracing?: Tracing | undefined;
}

type UpgradeAnswer =
  | { kind: 'upgrade'; response: IncomingMessage; socket: Duplex; head: Buffer }
  | { kind: 'response'; response: IncomingMessage };

/**
 * Sends the upgrade request to the agent on a socket of its own (an upgraded socket leaves any
 * pool), opened by our connector: TLS verified, connect bounded. Resolves with the 101 and its
 * socket, or with the agent's other answer. Throws CallerGone, AGENT_RESPONSE_TIMEOUT or
 * AGENT_CONNECTION_LOST.
 */
function sendUpgrade(options: {
  conn: AgentConnection;
  path: string;
  headers: Record<string, string | string[]>;
  signal: AbortSignal;
  headersTimeoutMs: number;
}): Promise<UpgradeAnswer> {
  const { conn } = options;
  const origin = new URL(conn.origin);
  const connector = createConnector({ timeoutMs: conn.connectTimeoutMs });
  const where = { workspaceId: conn.target.workspaceId, agentId: conn.agentId };
  return new Promise((resolve, reject) => {
    const request = (origin.protocol === 'https:' ? httpsRequest : httpRequest)({
      method: 'GET',
      path: options.path,
      // Node would derive Host from the (absent) host option, `localhost:80`; the connection
      // comes from our connector, so name the agent's own host and port.
      headers: { ...options.headers, host: origin.host },
      createConnection: (_opts, oncreate) => {
        connector(
          { hostname: origin.hostname, protocol: origin.protocol, port: origin.port },
          (error, socket) => (error ? oncreate(error, undefined as unknown as Duplex) : oncreate(null, socket)),
        );
        return undefined;
      },
    });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      fn();
    };
    const timer = setTimeout(() => {
      request.destroy();
      settle(() => reject(failureAnswer('AGENTGATE_PROXY_HEADERS_TIMEOUT', `the agent did not answer the upgrade within ${options.headersTimeoutMs} ms`, where)));
    }, options.headersTimeoutMs);
    const onAbort = () => {
      request.destroy();
      const reason: unknown = options.signal.reason;
      settle(() =>
        reject(reason instanceof WorkEnded ? new ApiError(reason.code, `${reason.message} during the WebSocket upgrade`, where) : new CallerGone('the caller went away')),
      );
    };
    if (options.signal.aborted) onAbort();
    else options.signal.addEventListener('abort', onAbort, { once: true });
    request.once('upgrade', (response, socket, head) => settle(() => resolve({ kind: 'upgrade', response, socket, head })));
    request.once('response', (response) => settle(() => resolve({ kind: 'response', response })));
    request.once('error', (error) => {
      // As for proxied requests: a socket that never opened sent nothing.
      const failure = neverConnected(error)
        ? failureAnswer('AGENTGATE_PROXY_CONNECT_FAILED', 'a connection to the agent could not be opened for the WebSocket upgrade; nothing was sent', where)
        : failureAnswer('AGENTGATE_PROXY_CONNECTION_LOST', 'the connection to the agent broke during the WebSocket upgrade', where);
      settle(() => reject(failure));
    });
    request.end();
  });
}

export interface TunnelRequest {
  request: FastifyRequest;
  reply: FastifyReply;
  gated: GateSuccess;
  /**
   * The upgrade in the work in flight, registered before anything is sent to the agent: its
   * authority ending aborts the handshake, or closes the tunnel it became. Closed here.
   */
  work: Registration;
  /** The agent path, with its query, after the connection's base path. */
  path: string;
  signal: AbortSignal;
}

/**
 * The WebSocket side of the proxy: the upgrade sockets it was handed (so that shutdown can end
 * them, since the HTTP server does not track upgraded sockets) and the tunnels they became.
 */
export class WebSockets {
  readonly #pending = new WeakMap<IncomingMessage, { socket: Duplex; head: Buffer }>();
  readonly #sockets = new Set<Duplex>();

  readonly #tracing: Tracing;

  constructor(private readonly options: WebSocketProxyOptions) {
    this.#tracing = options.tracing ?? TRACING_OFF;
  }

  /**
   * Takes an upgrade request from the server's `upgrade` event and gives back a response on its
   * socket, for the app's routing: a refusal is written there as for any request.
   */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer): ServerResponse {
    socket.on('error', () => undefined);
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    if (isWebSocketUpgrade(req)) this.#pending.set(req, { socket, head });
    const res = new ServerResponse(req);
    res.assignSocket(socket as Socket);
    res.shouldKeepAlive = false;
    res.once('finish', () => socket.end());
    return res;
  }

  /** Whether this request came as a WebSocket upgrade that this instance accepted. */
  isUpgrade(req: IncomingMessage): boolean {
    return this.#pending.has(req);
  }

  /** Closes every upgrade socket, tunnel or not (shutdown). */
  closeAll(): void {
    for (const socket of this.#sockets) socket.destroy();
  }

  /**
   * Sends the upgrade to the agent. Its 101 joins the two sockets; any other answer of the agent
   * passes through. Throws (before anything was written to the caller) CallerGone or an
   * ApiError, for the route to answer. The gate's lease is released here, when the tunnel ends.
   */
  async open(t: TunnelRequest): Promise<void> {
    const { request, reply, gated, work } = t;
    const { metrics } = this.options;
    const pending = this.#pending.get(request.raw);
    if (!pending) {
      work.close();
      throw new Error('not an accepted upgrade');
    }
    const { socket, head } = pending;
    const log = request.log;
    const conn = gated.lease.conn;
    let release: (() => void) | undefined = () => {
      work.close();
      gated.lease.release();
    };
    // Until the tunnel is joined, the authority's end aborts the handshake.
    const ended = new AbortController();
    work.onEnd((ending) => ended.abort(new WorkEnded(ending)));
    // The upgrade request to the agent, until its answer (a tunnel's life is the server span's).
    const span = request.traceContext
      ? this.#tracing.tracer.startSpan(
          'agentgate.proxy',
          { kind: SpanKind.CLIENT, attributes: { 'http.request.method': 'GET', [ATTR.agentId]: conn.agentId, 'agentgate.websocket': true } },
          request.traceContext,
        )
      : undefined;
    try {
      let answer: UpgradeAnswer;
      try {
        const path = `${conn.basePath}${t.path}`;
        const headers = upstreamRequestHeaders(request.headers, {
          ...forwardedFor(request.raw, this.options.trust),
          requestId: request.id,
          signature: conn.sign('GET', path),
          trace: span && this.#tracing.headersFor(span),
        });
        answer = await sendUpgrade({
          conn,
          path,
          headers: { ...headers, connection: 'Upgrade', upgrade: String(request.headers.upgrade ?? 'websocket') },
          signal: AbortSignal.any([t.signal, ended.signal]),
          headersTimeoutMs: this.options.headersTimeoutMs,
        });
      } catch (error) {
        if (span) endSpan(span, failureOutcome(error));
        throw error;
      }
      if (span) {
        const status = answer.kind === 'upgrade' ? 101 : (answer.response.statusCode ?? 502);
        span.setAttribute('http.response.status_code', status);
        endSpan(span, { code: 'ok', status });
      }
      reply.hijack();
      if (answer.kind === 'response') {
        // The agent declined the upgrade: its answer passes through, as for any proxied call.
        const res = answer.response;
        const out = downstreamResponseHeaders(res.headers);
        const lines = [`HTTP/1.1 ${res.statusCode ?? 502} ${STATUS_CODES[res.statusCode ?? 502] ?? ''}`];
        for (const [name, value] of Object.entries(out)) {
          if (value === undefined || name === 'transfer-encoding') continue;
          for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${String(v)}`);
        }
        lines.push(`x-request-id: ${request.id}`, 'connection: close');
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
        res.pipe(socket);
        res.once('error', () => socket.destroy());
        metrics.proxyRequests.inc({ status: String(res.statusCode ?? 502) });
        log.info({ status: res.statusCode }, 'the agent declined the WebSocket upgrade');
        return;
      }
      const { response, socket: upstream, head: upstreamHead } = answer;
      const lines = ['HTTP/1.1 101 Switching Protocols', `upgrade: ${String(response.headers.upgrade ?? 'websocket')}`, 'connection: Upgrade'];
      for (const [name, value] of Object.entries(response.headers)) {
        if (value === undefined || withheldFromCaller(name)) continue;
        for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
      }
      lines.push('x-agentgate-upstream: agent', `x-request-id: ${request.id}`);
      if (gated.degraded) lines.push('x-agentgate-degraded: database');
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstream.write(head);
      upstream.on('error', () => socket.destroy());
      const done = release;
      release = undefined;
      let closed = false;
      let lifetime: NodeJS.Timeout | undefined;
      const close = (reason?: string) => {
        if (closed) return;
        closed = true;
        clearTimeout(lifetime);
        upstream.destroy();
        socket.destroy();
        done();
        metrics.proxyRequests.inc({ status: '101' });
        if (reason) log.info({ reason }, 'WebSocket closed by the gate');
        else log.info('WebSocket closed');
      };
      work.onEnd((ending) => close(ending.reason));
      const { idleTimeoutMs, maxLifetimeMs } = this.options;
      // Idle: no byte either way on the caller's socket (what the agent sends is written to it).
      if (socket instanceof Socket) socket.setTimeout(idleTimeoutMs, () => close(`idle for ${idleTimeoutMs} ms`));
      if (maxLifetimeMs > 0) lifetime = setTimeout(() => close(`open for ${maxLifetimeMs} ms`), maxLifetimeMs);
      upstream.once('close', () => close());
      socket.once('close', () => close());
      socket.pipe(upstream);
      upstream.pipe(socket);
      log.info('WebSocket proxied');
    } finally {
      release?.();
    }
  }
}
