// Header rules of the proxy (pure): hop-by-hop headers never cross in either direction; the
// caller's credentials, any x-agentgate-* header and every header of the forwarding families
// (by prefix) never reach the agent; forwarding headers, the W3C trace context and the gate's
// signature are set by the gate alone.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { callerTraceHeaders, type TraceHeaders } from '../tracing/trace-context.js';

// RFC 9110 section 7.6.1 and the usual proxy extras.
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * Headers that proxies and frameworks read as what the client, or a proxy before them, said about
 * the request: its address, host, scheme, port, path or method. Any caller can forge one, and an
 * agent's framework that honours it would let the caller leave the agent's base path or change
 * the method that was signed. The gate alone sets forwarding headers (`x-forwarded-for`,
 * `-proto`, `-host`): every caller-supplied header of these families is removed, by prefix, so
 * that a variant no list names is removed too.
 */
export const FORWARDING_PREFIXES = [
  'x-forwarded', // -for, -proto, -host, -port, -prefix, -scheme, -ssl, -server, -uri, -path...
  'forwarded', // RFC 7239, and forwarded-for
  'x-original', // -url, -uri, -host, -method, -forwarded-for...
  'x-rewrite', // -url
  'x-http-method', // -override, and x-http-method itself
  'x-method-override',
  'x-host',
  'x-real-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'x-originating-ip',
  'x-remote-', // -ip, -addr
  'x-proxyuser-ip',
  'x-envoy-',
  'x-appengine-',
  'true-client-ip',
  'client-ip',
  'cf-connecting-ip', // and -ipv6
  'fastly-client-ip',
  'akamai-client-ip',
];

// One test per header; the prefixes are letters and dashes only.
const FORWARDING = new RegExp(`^(?:${FORWARDING_PREFIXES.join('|')})`);

/** Whether a (lower-case) header name belongs to a forwarding family. */
export function isForwardingHeader(lower: string): boolean {
  return FORWARDING.test(lower);
}

/** Never forwarded to an agent: the caller's credentials and anything the gate itself sets. */
const CALLER_ONLY = new Set([
  'authorization',
  'cookie',
  'host',
  'x-request-id',
  'content-length',
  'expect',
  // Set below: the gate's own trace context, or the caller's when well-formed.
  'traceparent',
  'tracestate',
]);

function connectionTokens(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Set<string> {
  const value = headers.connection;
  const list = Array.isArray(value) ? value.join(',') : (value ?? '');
  return new Set(
    list
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean),
  );
}

export interface ForwardContext {
  /** The caller's address as the gate saw it. */
  clientIp: string;
  proto: 'http' | 'https';
  /** The Host the caller used, as a trusted proxy reports it (x-forwarded-host); otherwise undefined. */
  host: string | undefined;
  requestId: string;
  /** x-agentgate-auth for this request. */
  signature: string;
  /** The body length when known; otherwise the body is sent chunked. */
  contentLength?: number | undefined;
  /**
   * The gate's own trace context for this request (tracing on: its proxy span). Absent, the
   * caller's `traceparent` and `tracestate` pass unchanged, and only when well-formed.
   * Not signed (see auth/gate-signature.ts).
   */
  trace?: TraceHeaders | undefined;
}

export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, ctx: ForwardContext): Record<string, string | string[]> {
  const named = connectionTokens(incoming);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || named.has(lower) || CALLER_ONLY.has(lower) || lower.startsWith('x-agentgate-') || isForwardingHeader(lower)) continue;
    out[lower] = value;
  }
  out['x-forwarded-for'] = ctx.clientIp;
  out['x-forwarded-proto'] = ctx.proto;
  if (ctx.host) out['x-forwarded-host'] = ctx.host;
  out['x-request-id'] = ctx.requestId;
  const trace = ctx.trace ?? callerTraceHeaders(incoming.traceparent, incoming.tracestate);
  if (trace) {
    out.traceparent = trace.traceparent;
    if (trace.tracestate !== undefined) out.tracestate = trace.tracestate;
  }
  out['x-agentgate-auth'] = ctx.signature;
  if (ctx.contentLength !== undefined) out['content-length'] = String(ctx.contentLength);
  return out;
}

/**
 * Whether an agent's response header stays with the gate: hop-by-hop ones, x-agentgate-* ones
 * (those answers come from the gate alone) and set-cookie (a tool call has no business setting
 * cookies on the chat server's side).
 */
export function withheldFromCaller(lower: string): boolean {
  return HOP_BY_HOP.has(lower) || lower === 'set-cookie' || lower.startsWith('x-agentgate-');
}

/** The agent's response headers as the caller gets them: unchanged but for those the gate keeps. */
export function downstreamResponseHeaders(upstream: IncomingHttpHeaders | Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const named = connectionTokens(upstream);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (named.has(lower) || withheldFromCaller(lower)) continue;
    out[lower] = value;
  }
  out['x-agentgate-upstream'] = 'agent';
  return out;
}
