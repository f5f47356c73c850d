// WebSocket upgrades on `/workspaces/:id/conn/*` (SPEC 4.1): the same authentication and gate
// as any proxied request, then the upgrade is forwarded (signed) to the agent over its pool and
// the two sockets are joined; either side closing closes the other.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { randomUUID } from 'node:crypto';
import { ApiError } from '../errors.js';
import { admits, ownerScope } from '../auth/principal.js';
import { bearerToken } from '../auth/tokens.js';
import { signAgentRequest } from '../auth/agent-signature.js';
import type { TokenStore } from '../auth/token-store.js';
import { isDatabaseUnavailable } from '../db/failures.js';
import { CallerGone, type Gate } from '../gate/gate.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Metrics } from '../metrics.js';
import { toApiError } from '../http/plugins/problem.js';
import { proxyTarget } from './proxy-route.js';
import { HOP_BY_HOP, upstreamRequestHeaders } from './headers.js';

const ROUTE = /^\/workspaces\/[^/?]+\/conn\//;

export interface WebSocketProxyOptions {
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

export interface UpgradeHandler {
  (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void>;
  /** Closes every proxied WebSocket (shutdown): the HTTP server does not track them. */
  closeAll(): void;
}

/** Handles the HTTP server's `upgrade` events. */
export function createUpgradeHandler(options: WebSocketProxyOptions): UpgradeHandler {
  const { gate, tokens, lifecycle, metrics } = options;
  const open = new Set<Duplex>();

  const handler = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
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
      const token = bearerToken(req.headers.authorization);
      if (!token) throw new ApiError('UNAUTHENTICATED', 'a bearer token is required');
      let principal;
      try {
        principal = await tokens.resolve(token);
      } catch (error) {
        if (!isDatabaseUnavailable(error)) throw error;
        throw new ApiError('DATABASE_UNAVAILABLE', 'the token could not be checked: the database is unavailable', { retryAfter: 1 });
      }
      if (!principal) throw new ApiError('UNAUTHENTICATED', 'the token is unknown or revoked');
      if (!admits('conn', principal)) throw new ApiError('FORBIDDEN', 'this route needs a conn token');
      if (lifecycle.draining) throw new ApiError('SHUTTING_DOWN', 'agentgate is shutting down; retry on another replica');
      const target = proxyTarget(url, req.headers['x-agentgate-agent']);
      const gated = await gate.connect({
        workspaceId: target.workspaceId,
        agentName: target.agentName,
        ownerScope: ownerScope(principal),
        signal: controller.signal,
        log: log.child({ workspaceId: target.workspaceId }),
      });
      metrics.connTotal.inc({ code: 'ok' });
      release = () => gated.lease.release();
      const conn = gated.lease.conn;
      const path = `${conn.basePath}${target.path}${target.query}`;
      const headers = upstreamRequestHeaders(req.headers, {
        clientIp: req.socket.remoteAddress ?? '',
        proto: 'http',
        host: req.headers.host,
        requestId,
        signature: signAgentRequest(conn.target.tokenHash, 'GET', path),
      });
      let upgraded;
      try {
        upgraded = await conn.pool.upgrade({
          path,
          method: 'GET',
          headers,
          protocol: String(req.headers.upgrade ?? 'websocket'),
          signal: controller.signal,
        });
      } catch {
        if (controller.signal.aborted) throw new CallerGone('the caller went away');
        throw new ApiError('AGENT_CONNECTION_LOST', 'the agent refused or broke the WebSocket upgrade', {
          workspaceId: target.workspaceId,
          agentId: conn.agentId,
        });
      }
      const upstream = upgraded.socket;
      const lines = ['HTTP/1.1 101 Switching Protocols', `upgrade: ${String(upgraded.headers.upgrade ?? 'websocket')}`, 'connection: Upgrade'];
      for (const [name, value] of Object.entries(upgraded.headers)) {
        if (value === undefined || HOP_BY_HOP.has(name) || name === 'connection') continue;
        for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
      }
      lines.push('x-agentgate-upstream: agent', `x-request-id: ${requestId}`);
      if (gated.degraded) lines.push('x-agentgate-degraded: database');
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.on('error', () => socket.destroy());
      const done = release;
      release = undefined;
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        upstream.destroy();
        socket.destroy();
        done();
        metrics.proxyRequests.inc({ status: '101' });
        log.info({ agentId: conn.agentId }, 'WebSocket closed');
      };
      upstream.once('close', close);
      socket.once('close', close);
      socket.pipe(upstream);
      upstream.pipe(socket);
      log.info({ agentId: conn.agentId, workspaceId: target.workspaceId }, 'WebSocket proxied');
    } catch (error) {
      release?.();
      if (error instanceof CallerGone) {
        metrics.connTotal.inc({ code: 'client_closed' });
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
    closeAll: () => {
      for (const socket of open) socket.destroy();
    },
  });
}
