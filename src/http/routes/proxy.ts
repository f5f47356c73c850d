// `/workspaces/:workspaceId/conn/*` with any method (SPEC 4.1): the same gate as POST .../conn,
// then the request travels to `<agent address>/<rest>` over the agent's cached pool.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { SpanKind, type Span } from '@opentelemetry/api';
import { ApiError } from '../../domain/errors.js';
import { ownerScope, revocableTokenId } from '../../auth/principal.js';
import type { Config } from '../../config.js';
import { CallerGone, type Gate, type GateSuccess } from '../../gate/gate.js';
import type { Metrics } from '../../metrics.js';
import { callerSignal } from '../caller-signal.js';
import { logRequest, noteOutcome } from '../plugins/request-log.js';
import { Uuid } from '../schemas.js';
import { proxyTarget, type ProxyTarget } from '../../proxy/target-path.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../../proxy/headers.js';
import { forwardRequest, relayBody } from '../../proxy/forward.js';
import { forwardedFor, type TrustProxy } from '../../proxy/trust-proxy.js';
import type { WebSockets } from '../../proxy/websocket.js';
import type { InFlight } from '../../gate/in-flight.js';
import { WorkEnded } from '../../domain/work-ended.js';
import { ATTR, endSpan, failureOutcome, type Tracing } from '../../tracing/tracing.js';

export const PROXY_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'] as const;

export interface ProxyRouteOptions {
  gate: Gate;
  metrics: Metrics;
  config: Config;
  trust: TrustProxy;
  /** Upgrade requests accepted from the server: this route turns them into tunnels. */
  websockets: WebSockets;
  tracing: Tracing;
  /** Where every request registers the authority it rests on, so that it ends when that does. */
  inFlight: InFlight;
}

const proxyRoutes: FastifyPluginAsyncTypebox<ProxyRouteOptions> = async (app, { gate, metrics, config, trust, websockets, tracing, inFlight }) => {
  // Bodies are streamed to the agent as they arrive, never parsed nor buffered here.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  const count = (status: number, started: number) => {
    metrics.proxyRequests.inc({ status: String(status) });
    metrics.proxySeconds.observe({ status: String(status) }, (performance.now() - started) / 1000);
  };

  app.route({
    method: [...PROXY_METHODS],
    url: '/workspaces/:workspaceId/conn/*',
    config: { access: 'conn' },
    schema: {
      tags: ['chat'],
      summary: "Proxy a tool call to the workspace's agent (any method; streams both ways)",
      description:
        'Forwarded to `<agent address>/<path>` with the query kept (`agent` removed). Agent ' +
        'responses pass through with `x-agentgate-upstream: agent`; the gate’s own errors are problem+json.',
      params: Type.Object({ workspaceId: Uuid, '*': Type.String() }),
    },
    handler: async (request, reply) => {
      const started = performance.now();
      let target: ProxyTarget;
      try {
        target = proxyTarget(request.raw.url ?? '', request.headers['x-agentgate-agent']);
      } catch (error) {
        return onFailure(error, request, reply, started, false);
      }
      const upgrade = websockets.isUpgrade(request.raw);
      if (upgrade && request.method !== 'GET') {
        return onFailure(new ApiError('NOT_FOUND', 'no WebSocket route for this method'), request, reply, started, false);
      }
      const declared = Number(request.headers['content-length'] ?? Number.NaN);
      if (declared > config.bodyLimitBytes) {
        const tooLarge = new ApiError('PAYLOAD_TOO_LARGE', `the request body is larger than ${config.bodyLimitBytes} bytes`);
        return onFailure(tooLarge, request, reply, started, false);
      }
      const signal = callerSignal(reply);
      const principal = request.principal!;
      const scope = ownerScope(principal);
      // Registered before anything is sent to the agent: an authority that ends from here on ends
      // this request, whatever phase it is in.
      const work = inFlight.register({ tokenId: revocableTokenId(principal), ownerScope: scope, workspaceId: target.workspaceId });
      let gated: GateSuccess;
      try {
        gated = await gate.connect({
          workspaceId: target.workspaceId,
          agentName: target.agentName,
          ownerScope: scope,
          signal,
          log: request.log,
          startedAt: started - reply.elapsedTime,
          trace: request.traceContext,
        });
      } catch (error) {
        work.close();
        return onFailure(error, request, reply, started, true);
      }
      metrics.connTotal.inc({ code: 'ok' });
      work.reached(gated.agent.id, gated.agent.buildId);
      if (work.ended) {
        gated.lease.release();
        work.close();
        return onFailure(new ApiError(work.ended.code, work.ended.reason, { workspaceId: target.workspaceId }), request, reply, started, false);
      }
      if (upgrade) {
        try {
          await websockets.open({
            request,
            reply,
            gated,
            work,
            path: `${target.path}${target.query}`,
            signal,
          });
          return;
        } catch (error) {
          return onFailure(error, request, reply, started, false);
        }
      }
      const { lease } = gated;
      const conn = lease.conn;
      noteOutcome(request, { agentId: conn.agentId, degraded: gated.degraded || undefined });
      const method = request.method;
      // The call to the agent, from its request to the last byte of its response body.
      const span: Span | undefined = request.traceContext
        ? tracing.tracer.startSpan(
            'agentgate.proxy',
            { kind: SpanKind.CLIENT, attributes: { 'http.request.method': method, [ATTR.agentId]: conn.agentId } },
            request.traceContext,
          )
        : undefined;
      let spanEnded = false;
      try {
        const path = `${conn.basePath}${target.path}${target.query}`;
        const hasBody = request.headers['transfer-encoding'] !== undefined || (Number.isFinite(declared) && declared > 0);
        const forwarded = await forwardRequest({
          conn,
          method,
          path,
          headers: upstreamRequestHeaders(request.headers, {
            ...forwardedFor(request.raw, trust),
            requestId: request.id,
            signature: conn.sign(method, path),
            contentLength: Number.isFinite(declared) ? declared : undefined,
            trace: span && tracing.headersFor(span),
          }),
          body: hasBody ? request.raw : undefined,
          bodyLimit: config.bodyLimitBytes,
          headersTimeoutMs: config.proxyHeadersTimeoutMs,
          callerSignal: signal,
          onStart: (abort) => work.onEnd((ending) => abort(new WorkEnded(ending))),
        });
        const headers = downstreamResponseHeaders(forwarded.headers);
        headers['x-request-id'] = request.id;
        if (gated.degraded) headers['x-agentgate-degraded'] = 'database';
        reply.hijack();
        try {
          reply.raw.writeHead(forwarded.statusCode, headers);
        } catch (error) {
          // A header Node refuses to send: the caller must not wait for an answer that never comes.
          forwarded.abort(error as Error);
          reply.raw.destroy();
          throw error;
        }
        const outcome = await relayBody(
          forwarded,
          reply.raw,
          span &&
            ((stream) => {
              spanEnded = true;
              span.setAttributes({ 'http.response.status_code': forwarded.statusCode, 'agentgate.proxy.stream': stream });
              endSpan(span, { code: 'ok', status: forwarded.statusCode });
            }),
        );
        count(forwarded.statusCode, started);
        if (outcome !== 'complete') {
          // The response was destroyed: no onResponse, so its line is written here.
          noteOutcome(request, { stream: outcome });
          logRequest(request, forwarded.statusCode, performance.now() - started);
        }
      } catch (error) {
        if (span && !spanEnded) endSpan(span, failureOutcome(error));
        if (error instanceof ApiError && (error.code === 'AGENT_CONNECTION_LOST' || error.code === 'AGENT_UNREACHABLE')) {
          // The pool's sockets are suspect, or the agent refuses new ones; the next call dials
          // afresh (unless one already did).
          lease.markBroken();
        }
        return onFailure(error, request, reply, started, false);
      } finally {
        work.close();
        lease.release();
      }
    },
  });

  /** `gatePhase`: the failure is the gate's decision, counted in agentgate_conn_total. */
  function onFailure(error: unknown, request: FastifyRequest, reply: FastifyReply, started: number, gatePhase: boolean): void {
    if (error instanceof CallerGone) {
      if (gatePhase) metrics.connTotal.inc({ code: 'client_closed' });
      count(499, started);
      noteOutcome(request, { code: 'client_closed' });
      logRequest(request, 499, performance.now() - started);
      if (!reply.sent) reply.hijack();
      reply.raw.destroy();
      return;
    }
    if (error instanceof ApiError) {
      if (gatePhase) metrics.connTotal.inc({ code: error.code });
      count(error.status, started);
    }
    // A body left unread would be taken for the next request on this connection.
    if (!request.raw.complete) reply.header('connection', 'close');
    throw error;
  }
};

export default proxyRoutes;
