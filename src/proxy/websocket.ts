// WebSocket upgrades on `/workspaces/:id/conn/*` (SPEC 4.1): the same authentication and gate
// as every proxied request, then the upgrade is forwarded (signed) to the agent over its pool and
// the two sockets are joined; either side closing closes the other.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { randomUUID } from 'node:crypto';
import { ApiError } from '../errors.js';
import { ownerScope, type Principal } from '../auth/principal.js';
import { authenticate } from '../auth/authenticate.js';
import type { TokenStore } from '../auth/token-store.js';
import type { TokenConcurrency } from '../auth/token-concurrency.js';
import { CallerGone, type Gate } from '../gate/gate.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Metrics } from '../metrics.js';
import { toApiError } from '../http/plugins/problem.js';
import { proxyTarget } from './proxy-route.js';
import { downstreamResponseHeaders, withheldFromCaller, upstreamRequestHeaders } from './headers.js';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AgentConnection } from '../gate/agent-connection.js';
import { createConnector, neverConnected } from '../gate/connector.js';
import { failureAnswer } from '../failure-codes.js';
import { Tunnels } from './tunnels.js';
import { forwardedFor, type TrustProxy } from './trust-proxy.js';

const ROUTE = /^\/workspaces\/[^/?]+\/conn\//;

/** A WebSocket upgrade on a proxy path; other upgrade requests are plain HTTP to us. */
export function isProxiedWebSocket(req: IncomingMessage): boolean {
  return String(req.headers.upgrade ?? '').toLowerCase() === 'websocket' && ROUTE.test(req.url ?? '');
}

/** The chat routes' per-token budget, shared with upgrades (SPEC 7: one budget per token). */
export type UpgradeRateLimit = (principal: Principal, ip: string) => Promise<{ allowed: boolean; retryAfterSeconds: number }>;

export interface WebSocketProxyOptions {
  headersTimeoutMs: number;
  /** A tunnel with no data either way for this long is closed. */
  idleTimeoutMs: number;
  /** A tunnel older than this is closed (0: no limit). */
  maxLifetimeMs: number;
  /** The reverse proxies whose forwarding headers are believed. */
  trust: TrustProxy;
  rateLimit?: UpgradeRateLimit | undefined;
  /** Per-token caps, shared with HTTP requests. */
  concurrency: TokenConcurrency;
  gate: Gate;
  tokens: TokenStore;
  lifecycle: Lifecycle;
  metrics: Metrics;
  logger: FastifyBaseLogger;
}

function writeProblem(socket: Duplex, error: ApiError, requestId: string): void {
  const problem = JSON.stringify(error.toProblem());
  const status = error.status;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'content-type: application/problem+json',
    `content-length: ${Buffer.byteLength(problem)}`,
    `x-request-id: ${requestId}`,
    ...(error.extras.retryAfter === undefined ? [] : [`retry-after: ${error.extras.retryAfter}`]),
    ...(error.code === 'UNAUTHENTICATED' ? ['www-authenticate: Bearer realm="agentgate"'] : []),
    'connection: close',
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${problem}`);
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
      settle(() => reject(new CallerGone('the caller went away')));
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

export interface UpgradeHandler {
  (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void>;
  /** Closes every proxied WebSocket (shutdown): the HTTP server does not track them. */
  closeAll(): void;
  /** The open tunnels, closed when the authority they rest on ends. */
  readonly tunnels: Tunnels;
}

/** Handles the HTTP server's `upgrade` events. */
export function createUpgradeHandler(options: WebSocketProxyOptions): UpgradeHandler {
  const { gate, tokens, lifecycle, metrics, concurrency } = options;
  const open = new Set<Duplex>();
  const tunnels = new Tunnels();

  const handler = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const startedAt = performance.now();
    const requestId = randomUUID();
    const log = options.logger.child({ reqId: requestId });
    socket.on('error', () => undefined);
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    const controller = new AbortController();
    socket.once('close', () => controller.abort(new CallerGone('the caller went away')));
    let release: (() => void) | undefined;
    try {
      const url = req.url ?? '';
      if (!ROUTE.test(url) || (req.method ?? 'GET') !== 'GET') {
        throw new ApiError('NOT_FOUND', 'no WebSocket route for this path');
      }
      // As for HTTP routes: a draining process answers before any token lookup.
      if (lifecycle.draining) throw new ApiError('SHUTTING_DOWN', 'agentgate is shutting down; retry on another replica');
      const principal = await authenticate(tokens, req.headers.authorization, 'conn');
      // A WebSocket holds a slot from its upgrade until its socket closes, refused or not:
      // the socket's one 'close' frees it.
      socket.once('close', concurrency.acquire('websocket', principal));
      const target = proxyTarget(url, req.headers['x-agentgate-agent']);
      const limit = await options.rateLimit?.(principal, req.socket.remoteAddress ?? '');
      if (limit && !limit.allowed) {
        throw new ApiError('RATE_LIMITED', 'over the per-minute limit for this token', { retryAfter: limit.retryAfterSeconds });
      }
      let gated;
      try {
        gated = await gate.connect({
          workspaceId: target.workspaceId,
          agentName: target.agentName,
          ownerScope: ownerScope(principal),
          signal: controller.signal,
          log: log.child({ workspaceId: target.workspaceId }),
          startedAt,
        });
      } catch (error) {
        if (error instanceof ApiError) metrics.connTotal.inc({ code: error.code });
        else if (error instanceof CallerGone) metrics.connTotal.inc({ code: 'client_closed' });
        throw error;
      }
      metrics.connTotal.inc({ code: 'ok' });
      release = () => gated.lease.release();
      const conn = gated.lease.conn;
      const path = `${conn.basePath}${target.path}${target.query}`;
      const headers = upstreamRequestHeaders(req.headers, {
        ...forwardedFor(req, options.trust),
        requestId,
        signature: conn.sign('GET', path),
      });
      const answer = await sendUpgrade({
        conn,
        path,
        headers: { ...headers, connection: 'Upgrade', upgrade: String(req.headers.upgrade ?? 'websocket') },
        signal: controller.signal,
        headersTimeoutMs: options.headersTimeoutMs,
      });
      if (answer.kind === 'response') {
        // The agent declined the upgrade: its answer passes through, as for any proxied call.
        const res = answer.response;
        const out = downstreamResponseHeaders(res.headers);
        const lines = [`HTTP/1.1 ${res.statusCode ?? 502} ${STATUS_CODES[res.statusCode ?? 502] ?? ''}`];
        for (const [name, value] of Object.entries(out)) {
          if (value === undefined || name === 'transfer-encoding') continue;
          for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${String(v)}`);
        }
        lines.push(`x-request-id: ${requestId}`, 'connection: close');
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
        res.pipe(socket);
        res.once('error', () => socket.destroy());
        metrics.proxyRequests.inc({ status: String(res.statusCode ?? 502) });
        log.info({ agentId: conn.agentId, status: res.statusCode }, 'the agent declined the WebSocket upgrade');
        release();
        release = undefined;
        return;
      }
      const { response, socket: upstream, head: upstreamHead } = answer;
      const lines = ['HTTP/1.1 101 Switching Protocols', `upgrade: ${String(response.headers.upgrade ?? 'websocket')}`, 'connection: Upgrade'];
      for (const [name, value] of Object.entries(response.headers)) {
        if (value === undefined || withheldFromCaller(name)) continue;
        for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
      }
      lines.push('x-agentgate-upstream: agent', `x-request-id: ${requestId}`);
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
        forget();
        clearTimeout(lifetime);
        upstream.destroy();
        socket.destroy();
        done();
        metrics.proxyRequests.inc({ status: '101' });
        if (reason) log.info({ agentId: conn.agentId, reason }, 'WebSocket closed by the gate');
        else log.info({ agentId: conn.agentId }, 'WebSocket closed');
      };
      const forget = tunnels.add(
        { tokenId: principal.kind === 'agent' ? '' : principal.tokenId, workspaceId: target.workspaceId, agentId: conn.agentId, buildId: conn.target.buildId },
        close,
      );
      // Idle: no byte either way on the caller's socket (what the agent sends is written to it).
      if (socket instanceof Socket) socket.setTimeout(options.idleTimeoutMs, () => close(`idle for ${options.idleTimeoutMs} ms`));
      if (options.maxLifetimeMs > 0) lifetime = setTimeout(() => close(`open for ${options.maxLifetimeMs} ms`), options.maxLifetimeMs);
      upstream.once('close', () => close());
      socket.once('close', () => close());
      socket.pipe(upstream);
      upstream.pipe(socket);
      log.info({ agentId: conn.agentId, workspaceId: target.workspaceId }, 'WebSocket proxied');
    } catch (error) {
      release?.();
      if (error instanceof CallerGone) {
        socket.destroy();
        return;
      }
      const apiError = toApiError(error);
      if (apiError.code === 'INTERNAL') log.error({ err: error }, 'WebSocket upgrade failed');
      else log.info({ code: apiError.code }, 'WebSocket upgrade refused');
      if (!socket.destroyed) writeProblem(socket, apiError, requestId);
    }
  };
  return Object.assign(handler, {
    tunnels,
    closeAll: () => {
      for (const socket of open) socket.destroy();
    },
  });
}
