// The gate's tracing, as every layer sees it: a flag tested once per call and, when it is set, a
// tracer and the W3C propagator. Off (the default) is TRACING_OFF: no span, context or closure is
// made on any request; code branches on `enabled` before doing anything for a trace. The SDK that
// exports spans is loaded only when tracing is on (./sdk.ts, imported dynamically).
import type { IncomingHttpHeaders } from 'node:http';
import {
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  defaultTextMapSetter,
  trace,
  type Context,
  type Span,
  type TextMapPropagator,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { ApiError, ERROR_CATALOGUE } from '../domain/errors.js';
import { apiCodeOfError } from '../domain/failures.js';
import type { TraceHeaders } from './trace-context.js';

export const TRACER_NAME = 'agentgate';

/** Attribute names of the gate's own (semantic-convention names are written where used). */
export const ATTR = {
  workspaceId: 'agentgate.workspace.id',
  agentId: 'agentgate.agent.id',
  agentName: 'agentgate.agent.name',
  /** `ok`, a contract §6 code, or `client_closed`. */
  outcome: 'agentgate.outcome',
  degraded: 'agentgate.degraded',
  cached: 'agentgate.cached',
  requestId: 'agentgate.request_id',
} as const;

export interface Tracing {
  /** False: make no span; every traced step tests this before anything else. */
  readonly enabled: boolean;
  readonly tracer: Tracer;
  /** The caller's trace context from its `traceparent` and `tracestate` (root when absent or malformed). */
  extract(headers: IncomingHttpHeaders): Context;
  /** `traceparent` (and `tracestate`) naming `span` as the parent of a request sent under it. */
  headersFor(span: Span): TraceHeaders | undefined;
}

/** Tracing off: the API's no-op tracer, never consulted (callers test `enabled` first). */
export const TRACING_OFF: Tracing = Object.freeze({
  enabled: false,
  // A provider of its own, not the global one: nothing registered elsewhere changes what "off" is.
  tracer: new ProxyTracerProvider().getTracer(TRACER_NAME),
  extract: () => ROOT_CONTEXT,
  headersFor: () => undefined,
});

/** Tracing on, with spans made by `provider` and trace context read and written by `propagator`. */
export function tracingWith(provider: TracerProvider, propagator: TextMapPropagator): Tracing {
  return Object.freeze({
    enabled: true,
    tracer: provider.getTracer(TRACER_NAME),
    extract: (headers: IncomingHttpHeaders) => propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter),
    headersFor(span: Span): TraceHeaders | undefined {
      const carrier: Partial<TraceHeaders> = {};
      propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter);
      if (carrier.traceparent === undefined) return undefined;
      return carrier.tracestate ? { traceparent: carrier.traceparent, tracestate: carrier.tracestate } : { traceparent: carrier.traceparent };
    },
  });
}

/**
 * A span of one step under `parent`, the call's trace: none when the call is not traced (a null
 * or absent parent: tracing is off, or the step runs outside a request). Its attributes are set
 * with `span?.setAttributes({...})`, which builds nothing when there is no span.
 */
export function childSpan(tracing: Tracing, parent: Context | null | undefined, name: string, kind: SpanKind = SpanKind.INTERNAL): Span | undefined {
  if (!parent || !tracing.enabled) return undefined;
  return tracing.tracer.startSpan(name, { kind }, parent);
}

export interface Outcome {
  /** `ok`, a contract §6 code, or `client_closed`. */
  code: string;
  /** The HTTP status it is answered with, when it is answered. */
  status?: number | undefined;
}

/** What a failure is answered with: its code and status (none when nobody is left to answer). */
export function failureOutcome(error: unknown): Outcome {
  if (error instanceof ApiError) return { code: error.code, status: error.status };
  const code = apiCodeOfError(error);
  if (code === null) return { code: 'client_closed' };
  if (code !== undefined) return { code, status: ERROR_CATALOGUE[code].status };
  return { code: 'INTERNAL', status: 500 };
}

/**
 * Ends a span with its outcome. A 5xx (the gate's or the agent's) is an error of the span;
 * a refusal that is an answer (4xx: a sentinel, say) is not, and neither is a caller leaving.
 */
export function endSpan(span: Span, outcome: Outcome): void {
  span.setAttribute(ATTR.outcome, outcome.code);
  if (outcome.status !== undefined && outcome.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.code });
  span.end();
}
