// One server span per request when tracing is on: a child of the caller's span when it sent a
// W3C `traceparent`, named by method and route template (never the raw path), ended when the
// response is done or the connection is gone, with what the request log line says of it
// (workspace, agent, outcome code, degraded). Tracing off: no hook is added at all.
import fp from 'fastify-plugin';
import { SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ATTR, type Tracing } from '../../tracing/tracing.js';
import type { Outcome } from './request-log.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The server span's context when tracing is on (the parent of the gate's spans); else null. */
    traceContext: Context | null;
  }
}

const names = new Map<string, string>();

/** `POST /workspaces/{workspaceId}/conn`: Fastify's `:param` and `*` as a template reads them. */
function spanName(method: string, route: string | undefined): string {
  if (route === undefined) return method;
  let template = names.get(route);
  if (template === undefined) {
    template = route.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{path}');
    names.set(route, template);
  }
  return `${method} ${template}`;
}

function endServerSpan(span: Span, request: FastifyRequest, reply: FastifyReply): void {
  const o: Outcome | null = request.outcome;
  const res = reply.raw;
  const params = request.params as { workspaceId?: unknown } | undefined;
  const workspaceId = o?.workspaceId ?? params?.workspaceId;
  if (typeof workspaceId === 'string') span.setAttribute(ATTR.workspaceId, workspaceId);
  if (o?.agentId !== undefined) span.setAttribute(ATTR.agentId, o.agentId);
  if (o?.degraded !== undefined) span.setAttribute(ATTR.degraded, o.degraded);
  // No status when no response head went out (the caller left; a tunnel's 101 is written raw).
  const status = res.headersSent ? res.statusCode : undefined;
  if (status !== undefined) span.setAttribute('http.response.status_code', status);
  span.setAttribute(ATTR.outcome, o?.code ?? 'ok');
  if (status !== undefined && status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: o?.code ?? String(status) });
  span.end();
}

export default fp<{ tracing: Tracing }>(
  (app, { tracing }, done) => {
    app.decorateRequest('traceContext', null);
    if (tracing.enabled) {
      app.addHook('onRequest', (request, reply, next) => {
        const parent = tracing.extract(request.headers);
        const route = request.routeOptions.url;
        const span = tracing.tracer.startSpan(
          spanName(request.method, route),
          {
            kind: SpanKind.SERVER,
            attributes: {
              'http.request.method': request.method,
              ...(route === undefined ? {} : { 'http.route': route }),
              'url.scheme': request.protocol,
              'network.protocol.version': request.raw.httpVersion,
              [ATTR.requestId]: request.id,
            },
          },
          parent,
        );
        request.traceContext = trace.setSpan(parent, span);
        // `close` follows a finished response and a destroyed one alike, exactly once.
        reply.raw.once('close', () => endServerSpan(span, request, reply));
        next();
      });
    }
    done();
  },
  { name: 'agentgate-server-span', dependencies: ['agentgate-request-log'] },
);
