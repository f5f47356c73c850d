// WebSocket upgrades on `/workspaces/:id/conn/*` (contract §4.1). An upgrade request goes through
// the app's routing like any other, so the same admission applies (draining, authentication,
// per-token caps, rate limit, load shedding); the proxy route then hands it here once the gate
// has a connection: the upgrade is forwarded (signed) to the agent on a socket of its own and
// the two sockets are joined; either side closing closes the other.
import { ServerResponse, STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import { ApiError } from '../domain/errors.js';
import type { Metrics } from '../metrics.js';
import { downstreamResponseHeaders, withheldFromCaller, upstreamRequestHeaders } from './headers.js';
import type { AgentConnection, UpgradeAnswer } from '../transport/agent-transport.js';
import { CallerGone, HeadersTimeout, RequestNotSent, WorkEnded, failureAnswer } from '../domain/failures.js';
import { forwardedFor, type TrustProxy } from './trust-proxy.js';
import type { ProxiedCall } from './proxied-call.js';
import { SpanKind } from '@opentelemetry/api';
import { ATTR, TRACING_OFF, childSpan, endSpan, failureOutcome, type Tracing } from '../tracing/tracing.js';

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

/**
 * Sends the upgrade request to the agent, on a stream of its own (an upgraded socket leaves any
 * pool). Resolves with the 101 and its stream, or with the agent's other answer. Throws
 * CallerGone, or an ApiError: AGENT_RESPONSE_TIMEOUT, AGENT_UNREACHABLE (nothing was sent),
 * AGENT_CONNECTION_LOST, or the code of the work's ending.
 */
async function sendUpgrade(options: {
  conn: AgentConnection;
  path: string;
  headers: Record<string, string | string[]>;
  signal: AbortSignal;
  headersTimeoutMs: number;
}): Promise<UpgradeAnswer> {
  const { conn } = options;
  const where = { workspaceId: conn.target.workspaceId, agentId: conn.agentId };
  const bound = new AbortController();
  const timer = setTimeout(
    () => bound.abort(new HeadersTimeout(`the agent did not answer the upgrade within ${options.headersTimeoutMs} ms`)),
    options.headersTimeoutMs,
  );
  try {
    return await conn.upgrade({ path: options.path, headers: options.headers, signal: AbortSignal.any([options.signal, bound.signal]) });
  } catch (error) {
    if (error instanceof HeadersTimeout || error instanceof RequestNotSent) throw error.answer(where);
    if (error instanceof WorkEnded) throw new ApiError(error.answerCode, `${error.message} during the WebSocket upgrade`, where);
    if (options.signal.aborted) throw new CallerGone();
    throw failureAnswer('AGENTGATE_PROXY_CONNECTION_LOST', 'the connection to the agent broke during the WebSocket upgrade', where);
  } finally {
    clearTimeout(timer);
  }
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
  async open(t: ProxiedCall): Promise<void> {
    const { req, gated, work } = t;
    const { metrics } = this.options;
    const pending = this.#pending.get(req);
    if (!pending) {
      work.close();
      throw new Error('not an accepted upgrade');
    }
    const { socket, head } = pending;
    const log = t.log;
    const conn = gated.lease.conn;
    let release: (() => void) | undefined = () => {
      work.close();
      gated.lease.release();
    };
    // Until the tunnel is joined, the authority's end aborts the handshake.
    const ended = new AbortController();
    work.onEnd((ending) => ended.abort(new WorkEnded(ending)));
    // The upgrade request to the agent, until its answer (a tunnel's life is the server span's).
    const span = childSpan(this.#tracing, t.trace, 'agentgate.proxy', SpanKind.CLIENT);
    span?.setAttributes({ 'http.request.method': 'GET', [ATTR.agentId]: conn.agentId, 'agentgate.websocket': true });
    try {
      let answer: UpgradeAnswer;
      try {
        const path = `${conn.basePath}${t.path}`;
        const headers = upstreamRequestHeaders(req.headers, {
          ...forwardedFor(req, this.options.trust),
          requestId: t.requestId,
          signature: conn.sign('GET', path),
          trace: span && this.#tracing.headersFor(span),
        });
        answer = await sendUpgrade({
          conn,
          path,
          headers: { ...headers, connection: 'Upgrade', upgrade: String(req.headers.upgrade ?? 'websocket') },
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
      t.takeOver();
      if (answer.kind === 'response') {
        // The agent declined the upgrade: its answer passes through, as for any proxied call.
        const res = answer.response;
        const out = downstreamResponseHeaders(res.headers);
        const lines = [`HTTP/1.1 ${res.statusCode ?? 502} ${STATUS_CODES[res.statusCode ?? 502] ?? ''}`];
        for (const [name, value] of Object.entries(out)) {
          if (value === undefined || name === 'transfer-encoding') continue;
          for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${String(v)}`);
        }
        lines.push(`x-request-id: ${t.requestId}`, 'connection: close');
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
      lines.push('x-agentgate-upstream: agent', `x-request-id: ${t.requestId}`);
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
