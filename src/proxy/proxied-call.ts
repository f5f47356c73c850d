// One proxied tool call, once the gate has given it a connection (contract §4.1): the request
// signed and sent to `<agent address>/<path>` with the caller's body streamed as it arrives, the
// agent's response streamed back, all on plain Node types. The route before it parses, admits
// and answers; this owns the call's span, and releases its lease and its work in flight.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SpanKind, type Context } from '@opentelemetry/api';
import type { BaseLogger } from 'pino';
import { ApiError } from '../domain/errors.js';
import { WorkEnded } from '../domain/failures.js';
import { leavesConnectionSuspect } from '../gate/decide.js';
import type { GateSuccess } from '../gate/gate.js';
import type { Registration } from '../gate/in-flight.js';
import { ATTR, childSpan, endSpan, failureOutcome, type Tracing } from '../tracing/tracing.js';
import { forwardRequest, relayBody } from './forward.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.js';
import { forwardedFor, type TrustProxy } from './trust-proxy.js';

/** What a proxied call (HTTP or WebSocket) is handed by its route. */
export interface ProxiedCall {
  req: IncomingMessage;
  requestId: string;
  log: Pick<BaseLogger, 'info'>;
  /** The request's trace (tracing on), or none. */
  trace: Context | null | undefined;
  /**
   * Takes the response over from the framework: from then on the call writes it, or destroys
   * it. Until then a failure is thrown, for the route to answer.
   */
  takeOver(): ServerResponse;
  gated: GateSuccess;
  /** The call in the work in flight, registered before anything was sent to the agent. */
  work: Registration;
  /** The agent path with its query, after the connection's base path. */
  path: string;
  /** Aborted (with CallerGone) when the caller goes away. */
  signal: AbortSignal;
}

export interface HttpProxyOptions {
  bodyLimitBytes: number;
  headersTimeoutMs: number;
  trust: TrustProxy;
  tracing: Tracing;
}

export class HttpProxy {
  constructor(private readonly options: HttpProxyOptions) {}

  /**
   * Runs the call to its end: the status the agent answered and whether its body reached the
   * caller whole. Throws CallerGone or an ApiError before anything was written to the caller.
   * The lease and the work are released here, whatever happens.
   */
  async forward(call: ProxiedCall, declaredLength: number): Promise<{ statusCode: number; outcome: 'complete' | 'broken' }> {
    const { req, gated, work } = call;
    const { tracing } = this.options;
    const conn = gated.lease.conn;
    const method = req.method ?? 'GET';
    // The call to the agent, from its request to the last byte of its response body.
    const span = childSpan(tracing, call.trace, 'agentgate.proxy', SpanKind.CLIENT);
    span?.setAttributes({ 'http.request.method': method, [ATTR.agentId]: conn.agentId });
    let spanEnded = false;
    try {
      const path = `${conn.basePath}${call.path}`;
      const hasBody = req.headers['transfer-encoding'] !== undefined || (Number.isFinite(declaredLength) && declaredLength > 0);
      const forwarded = await forwardRequest({
        conn,
        method,
        path,
        headers: upstreamRequestHeaders(req.headers, {
          ...forwardedFor(req, this.options.trust),
          requestId: call.requestId,
          signature: conn.sign(method, path),
          contentLength: Number.isFinite(declaredLength) ? declaredLength : undefined,
          trace: span && tracing.headersFor(span),
        }),
        body: hasBody ? req : undefined,
        bodyLimit: this.options.bodyLimitBytes,
        headersTimeoutMs: this.options.headersTimeoutMs,
        callerSignal: call.signal,
        onStart: (abort) => work.onEnd((ending) => abort(new WorkEnded(ending))),
      });
      const headers = downstreamResponseHeaders(forwarded.headers);
      headers['x-request-id'] = call.requestId;
      if (gated.degraded) headers['x-agentgate-degraded'] = 'database';
      const res = call.takeOver();
      try {
        res.writeHead(forwarded.statusCode, headers);
      } catch (error) {
        // A header Node refuses to send: the caller must not wait for an answer that never comes.
        forwarded.abort(error as Error);
        res.destroy();
        throw error;
      }
      const outcome = await relayBody(
        forwarded,
        res,
        span &&
          ((stream) => {
            spanEnded = true;
            span.setAttributes({ 'http.response.status_code': forwarded.statusCode, 'agentgate.proxy.stream': stream });
            endSpan(span, { code: 'ok', status: forwarded.statusCode });
          }),
      );
      return { statusCode: forwarded.statusCode, outcome };
    } catch (error) {
      if (span && !spanEnded) endSpan(span, failureOutcome(error));
      // The next call dials afresh (unless one already did).
      if (error instanceof ApiError && leavesConnectionSuspect(error.code)) gated.lease.markBroken();
      throw error;
    } finally {
      work.close();
      gated.lease.release();
    }
  }
}
