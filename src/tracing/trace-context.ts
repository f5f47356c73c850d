// W3C Trace Context headers (https://www.w3.org/TR/trace-context/) as the gate forwards them when
// it does not trace itself: the caller's `traceparent` and `tracestate` pass through, so the
// agent's spans join the caller's trace, but only when well-formed (a later version of
// `traceparent` is rewritten as version 00). Pure; no OpenTelemetry.

export interface TraceHeaders {
  traceparent: string;
  /** Absent rather than undefined: the headers are spread into requests as they are. */
  tracestate?: string;
}

// version-traceid-parentid-flags, lowercase hex. Version ff is forbidden, all-zero ids are
// invalid; a later version may append fields after a dash, version 00 may not.
const TRACEPARENT = /^(?!ff)([0-9a-f]{2})-(?![0]{32})[0-9a-f]{32}-(?![0]{16})[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$/;
const KEY = /^(?:[a-z][_0-9a-z*/-]{0,255}|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})$/;
const VALUE = /^[ -+\--<>-~]{0,255}[!-+\--<>-~]$/;
/** At most this many list members (W3C). */
const MAX_MEMBERS = 32;
/** Longer lists are dropped, as OpenTelemetry's own propagator drops them when the gate traces. */
const MAX_TRACESTATE_LENGTH = 512;

export function isTraceparent(value: string): boolean {
  const match = TRACEPARENT.exec(value);
  return match !== null && !(match[1] === '00' && match[2] !== undefined);
}

/** A `tracestate` list is well-formed: at most 32 `key=value` members, no key twice. */
export function isTracestate(value: string): boolean {
  if (value.length > MAX_TRACESTATE_LENGTH) return false;
  const keys = new Set<string>();
  for (const raw of value.split(',')) {
    const member = raw.trim();
    // Empty members are allowed (and ignored) by the grammar.
    if (member === '') continue;
    const eq = member.indexOf('=');
    if (eq <= 0) return false;
    const key = member.slice(0, eq);
    if (!KEY.test(key) || !VALUE.test(member.slice(eq + 1)) || keys.has(key)) return false;
    keys.add(key);
  }
  return keys.size <= MAX_MEMBERS;
}

/**
 * The caller's trace headers as they may be forwarded: undefined when there is no well-formed
 * `traceparent` (a repeated one arrives joined with a comma, and is malformed); `tracestate` only
 * beside a valid `traceparent`, and only when well-formed itself (W3C: a tracestate that cannot be
 * parsed is not propagated).
 */
export function callerTraceHeaders(traceparent: unknown, tracestate: unknown): TraceHeaders | undefined {
  if (typeof traceparent !== 'string' || !isTraceparent(traceparent)) return undefined;
  // A later version is forwarded as the version this gate speaks (W3C 3.2.4): its first four
  // fields, as version 00, so that nothing the gate has not understood (of any length) crosses.
  const parent = traceparent.startsWith('00-') ? traceparent : `00-${traceparent.slice(3, 55)}`;
  // Node joins repeated tracestate headers with ", ", which is the list they make together.
  const state = Array.isArray(tracestate) ? tracestate.join(',') : tracestate;
  return typeof state === 'string' && state !== '' && isTracestate(state) ? { traceparent: parent, tracestate: state } : { traceparent: parent };
}
