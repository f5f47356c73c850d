// What a `conn` call does with the row it just read (contract §5 steps 2-5 and 8), as a pure
// function: no clock, no cache, no database. The gate reads, asks, then acts on the answer.
import type { Classification } from '../domain/agent.js';
import type { FailedDialCode } from './failed-dials.js';

/** The agent's live cached connection, if any, and whether it still points at its address. */
export type CachedConnection = 'none' | 'matching' | 'stale';

/** A failed dial remembered for the agent (FailedDials.recall). */
export interface RememberedFailure {
  code: FailedDialCode;
  detail: string;
  retryAfterSeconds: number;
}

export interface DecideInput {
  classification: Classification;
  cached: CachedConnection;
  remembered: RememberedFailure | undefined;
  /** `config.disconnectGraceMs`: silence shorter than this is a weak signal. */
  disconnectGraceMs: number;
}

export type RefusalCode = 'AGENT_NEVER_CONNECTED' | 'AGENT_DISCONNECTED' | FailedDialCode;

/**
 * `evict`: close the agent's cached connection (it cannot serve: the agent is gone, its status
 * is in doubt, or it points at an old address).
 */
export type Decision =
  | { kind: 'refuse'; code: RefusalCode; detail: string; evict: boolean; retryAfterSeconds?: number }
  | { kind: 'reuse' }
  | { kind: 'dial'; evict: boolean };

/** A disconnect the gate answers at once: a goodbye, an unknown start, or silence past the grace. */
export function isStrongDisconnect(c: Classification, disconnectGraceMs: number): boolean {
  return c.status === 'disconnected' && (c.cause === 'goodbye' || c.disconnectedForMs === null || c.disconnectedForMs >= disconnectGraceMs);
}

export function decide(input: DecideInput): Decision {
  const { classification: c, cached, remembered } = input;
  if (c.status === 'timeout') {
    return { kind: 'refuse', code: 'AGENT_NEVER_CONNECTED', detail: 'the agent never connected and its connection timeout has passed', evict: true };
  }
  let evict: boolean;
  if (c.status === 'disconnected') {
    if (isStrongDisconnect(c, input.disconnectGraceMs)) {
      const detail = c.cause === 'goodbye' ? 'the agent said goodbye' : 'the agent stopped reporting heartbeats';
      return { kind: 'refuse', code: 'AGENT_DISCONNECTED', detail, evict: true };
    }
    // A weak signal (a missed heartbeat or two): the cached connection is not trusted, a fresh
    // dial decides.
    evict = true;
  } else {
    // The cache is checked before the failed-dial memory: a connection that serves now is a
    // better answer than a failure remembered from before it.
    if (cached === 'matching') return { kind: 'reuse' };
    evict = cached === 'stale';
  }
  if (remembered) {
    return {
      kind: 'refuse',
      code: remembered.code,
      detail: `${remembered.detail} (remembered from a recent dial)`,
      evict,
      retryAfterSeconds: remembered.retryAfterSeconds,
    };
  }
  return { kind: 'dial', evict };
}

/**
 * Pure: why what the agent is now ends the calls running on it, or undefined. The rule of a new
 * call: what the gate would refuse a new call for at once (the agent no longer the workspace's
 * current one, its connection timeout passed, a goodbye, silence past the grace) ends the
 * running calls too; a weak signal does not. `now` undefined: the agent's row is gone.
 */
export function endsCallsOn(now: { classification: Classification; current: boolean } | undefined, disconnectGraceMs: number): string | undefined {
  if (now === undefined || !now.current) return 'the workspace was stopped, rebuilt or deleted during the call';
  const c = now.classification;
  if (c.status === 'timeout') return 'the agent never connected and its connection timeout passed during the call';
  if (!isStrongDisconnect(c, disconnectGraceMs)) return undefined;
  return c.status === 'disconnected' && c.cause === 'goodbye'
    ? 'the agent said goodbye during the call'
    : 'the agent stopped reporting heartbeats during the call';
}

/**
 * Pure: whether a call that failed with `code` leaves its cached connection suspect, so that the
 * next call dials afresh rather than trust it: its sockets broke, the agent refused a new one,
 * or it fell silent on a request (a frozen agent would otherwise hold every next call for the
 * whole response bound). One rule for the proxy, WebSockets and the MCP front door.
 */
export function leavesConnectionSuspect(code: string): boolean {
  return code === 'AGENT_CONNECTION_LOST' || code === 'AGENT_UNREACHABLE' || code === 'AGENT_RESPONSE_TIMEOUT';
}
