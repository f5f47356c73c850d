// `/workspaces/:workspaceId/conn/*` with any method (contract §4.1): the request is parsed and
// admitted here, the same gate as POST .../conn decides, and the call itself (src/proxy/) travels
// to `<agent address>/<rest>` over the agent's cached connection; this answers what it throws.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../../domain/errors.js';
import { CallerGone, WorkEnded } from '../../domain/failures.js';
import { ownerScope, revocableTokenId } from '../../auth/principal.js';
import type { Config } from '../../config.js';
import type { Gate, GateSuccess } from '../../gate/gate.js';
import type { InFlight } from '../../gate/in-flight.js';
import type { Metrics } from '../../metrics.js';
import { proxyTarget, type ProxyTarget } from '../../proxy/target-path.js';
import type { HttpProxy, ProxiedCall } from '../../proxy/proxied-call.js';
import type { WebSockets } from '../../proxy/websocket.js';
import { answerCallerGone, callerSignal } from '../caller.js';
import { logRequest, noteOutcome } from '../plugins/request-log.js';
import { Uuid } from '../schemas.js';

export const PROXY_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'] as const;

export interface ProxyRouteOptions {
  gate: Gate;
  metrics: Metrics;
  config: Config;
  /** The HTTP calls, once admitted and gated. */
  proxy: HttpProxy;
  /** Upgrade requests accepted from the server: this route turns them into tunnels. */
  websockets: WebSockets;
  /** Where every request registers the authority it rests on, so that it ends when that does. */
  inFlight: InFlight;
}

const proxyRoutes: FastifyPluginAsyncTypebox<ProxyRouteOptions> = async (app, { gate, metrics, config, proxy, websockets, inFlight }) => {
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
        return answer(error, request, reply, started);
      }
      const upgrade = websockets.isUpgrade(request.raw);
      if (upgrade && request.method !== 'GET') {
        return answer(new ApiError('NOT_FOUND', 'no WebSocket route for this method'), request, reply, started);
      }
      const declared = Number(request.headers['content-length'] ?? Number.NaN);
      if (declared > config.bodyLimitBytes) {
        const tooLarge = new ApiError('PAYLOAD_TOO_LARGE', `the request body is larger than ${config.bodyLimitBytes} bytes`);
        return answer(tooLarge, request, reply, started);
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
        return answer(error, request, reply, started);
      }
      work.reached(gated.agent.id, gated.agent.buildId);
      if (work.ended) {
        gated.lease.release();
        work.close();
        return answer(new WorkEnded(work.ended).answer({ workspaceId: target.workspaceId }), request, reply, started);
      }
      noteOutcome(request, { agentId: gated.agent.id, degraded: gated.degraded || undefined });
      const call: ProxiedCall = {
        req: request.raw,
        requestId: request.id,
        log: request.log,
        trace: request.traceContext,
        takeOver: () => {
          reply.hijack();
          return reply.raw;
        },
        gated,
        work,
        path: `${target.path}${target.query}`,
        signal,
      };
      try {
        if (upgrade) return await websockets.open(call);
        const { statusCode, outcome } = await proxy.forward(call, declared);
        count(statusCode, started);
        if (outcome !== 'complete') {
          // The response was destroyed: no onResponse, so its line is written here.
          noteOutcome(request, { stream: outcome });
          logRequest(request, statusCode, performance.now() - started);
        }
      } catch (error) {
        return answer(error, request, reply, started);
      }
    },
  });

  /** Answers a call that failed before anything was written to its caller. */
  function answer(error: unknown, request: FastifyRequest, reply: FastifyReply, started: number): void {
    if (error instanceof CallerGone) {
      count(499, started);
      return answerCallerGone(request, reply, performance.now() - started);
    }
    if (error instanceof ApiError) count(error.status, started);
    // A body left unread would be taken for the next request on this connection.
    if (!request.raw.complete) reply.header('connection', 'close');
    throw error;
  }
};

export default proxyRoutes;
