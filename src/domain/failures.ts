// The gate's internal failures, in one place, as undici's errors.js keeps its own: each class has
// a stable `code`, and FAILURE_API_CODES beside them says which public code (contract §6) each
// one answers with. Code branches on these classes and codes (and on undici's, Node's and
// PostgreSQL's), never on an error's message.
import { ApiError, type ErrorCode, type ProblemExtras } from './errors.js';

/** `null`: nobody is left to answer (the caller went away, or nobody waits any more). */
export const FAILURE_API_CODES = {
  /** A database query or pool wait ran out of its budget. */
  AGENTGATE_DB_TIMEOUT: 'DATABASE_UNAVAILABLE',
  /** The database connection broke, or none could be opened. */
  AGENTGATE_DB_UNAVAILABLE: 'DATABASE_UNAVAILABLE',
  /** A dial failed before its bound (refused, DNS, TLS, a non-2xx health check). */
  AGENTGATE_DIAL_UNREACHABLE: 'AGENT_UNREACHABLE',
  /** A dial got no answer within its bound. */
  AGENTGATE_DIAL_TIMEOUT: 'AGENT_DIAL_TIMEOUT',
  /** A dial every caller left; not a failure of the agent. */
  AGENTGATE_DIAL_ABANDONED: null,
  /** One socket to the agent took longer than the connect bound to open. */
  AGENTGATE_CONNECT_TIMEOUT: 'AGENT_UNREACHABLE',
  /** A socket still connecting was given up: nobody waits for it. */
  AGENTGATE_CONNECT_ABANDONED: null,
  /** The caller went away. */
  AGENTGATE_CALLER_GONE: null,
  /** The caller cancelled its MCP request (notifications/cancelled): it expects no answer. */
  AGENTGATE_CALL_CANCELLED: null,
  /** This call's own budget ran out while it waited for a shared dial. */
  AGENTGATE_WAIT_EXPIRED: 'AGENT_DIAL_TIMEOUT',
  /** Too many calls already wait for the agent's dial. */
  AGENTGATE_TOO_MANY_WAITERS: 'OVERLOADED',
  /** Work in flight was ended from outside; WorkEnded says with which code. */
  AGENTGATE_WORK_ENDED: 'AGENT_CONNECTION_LOST',
  /** A proxied request got no response headers in time. */
  AGENTGATE_PROXY_HEADERS_TIMEOUT: 'AGENT_RESPONSE_TIMEOUT',
  /** The caller's body grew past the limit. */
  AGENTGATE_PROXY_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  /** A proxied request found no socket: the connect failed, nothing was sent. */
  AGENTGATE_PROXY_CONNECT_FAILED: 'AGENT_UNREACHABLE',
  /** The agent connection broke after the request was (perhaps partly) sent. */
  AGENTGATE_PROXY_CONNECTION_LOST: 'AGENT_CONNECTION_LOST',
  /** An agent's MCP response, once begun, sent nothing (no event, no keep-alive) for the headers bound. */
  AGENTGATE_MCP_RESPONSE_SILENT: 'AGENT_RESPONSE_TIMEOUT',
  /** An agent's answer to an MCP request did not arrive within its whole bound. */
  AGENTGATE_MCP_TOTAL_TIMEOUT: 'AGENT_RESPONSE_TIMEOUT',
  /** One message of an agent's MCP answer was larger than the gate carries. */
  AGENTGATE_MCP_MESSAGE_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
} as const satisfies Record<string, ErrorCode | null>;

export type FailureCode = keyof typeof FAILURE_API_CODES;
export type ApiCodeOf<C extends FailureCode> = (typeof FAILURE_API_CODES)[C];

/** The base of every internal failure: its code says what it answers. */
export abstract class Failure extends Error {
  abstract readonly code: FailureCode;

  /** The public code this failure answers with; null when nobody is left to answer. */
  get answerCode(): ErrorCode | null {
    return FAILURE_API_CODES[this.code];
  }

  /** The caller's answer (a failure nobody is left to hear has none: asking is a bug). */
  answer(extras?: ProblemExtras): ApiError {
    const code = this.answerCode;
    if (code === null) throw new Error(`${this.code} has no answer`);
    return new ApiError(code, this.message, extras);
  }
}

/** The API code of an internal failure code; undefined for codes not in the table. */
export function apiCodeOf(code: unknown): ErrorCode | null | undefined {
  return typeof code === 'string' && Object.hasOwn(FAILURE_API_CODES, code) ? FAILURE_API_CODES[code as FailureCode] : undefined;
}

/** The API code of an error carrying one of our codes; undefined for any other error. */
export function apiCodeOfError(error: unknown): ErrorCode | null | undefined {
  if (error instanceof Failure) return error.answerCode;
  return error instanceof Error ? apiCodeOf((error as { code?: unknown }).code) : undefined;
}

/** The caller's answer for an internal failure code that has one, where no failure was thrown. */
export function failureAnswer<C extends FailureCode>(code: C, detail: string, extras?: ProblemExtras): ApiError & { code: NonNullable<ApiCodeOf<C>> } {
  const api = FAILURE_API_CODES[code];
  // A code whose table entry is null has nobody to answer; asking for its answer is a bug.
  if (api === null) throw new Error(`${code} has no API answer`);
  return new ApiError(api, detail, extras) as ApiError & { code: NonNullable<ApiCodeOf<C>> };
}

// ---- The caller

/** The caller went away (its socket closed before its answer was complete). */
export class CallerGone extends Failure {
  override name = 'CallerGone';
  readonly code = 'AGENTGATE_CALLER_GONE';
  constructor(message = 'the caller went away') {
    super(message);
  }
}

/** Abort reason: the caller cancelled the MCP request (notifications/cancelled). */
export class CallCancelled extends Failure {
  override name = 'CallCancelled';
  readonly code = 'AGENTGATE_CALL_CANCELLED';
}

// ---- The database

/** A query, or the wait for a pooled connection, ran out of its budget. */
export class DatabaseTimeout extends Failure {
  override name = 'DatabaseTimeout';
  readonly code = 'AGENTGATE_DB_TIMEOUT';
}

/**
 * The database connection broke, or none could be opened. pg reports these without a code of
 * their own (no SQLSTATE, no errno): they are told apart by where they happened instead.
 */
export class DatabaseUnavailable extends Failure {
  override name = 'DatabaseUnavailable';
  readonly code = 'AGENTGATE_DB_UNAVAILABLE';
}

// ---- Dialing an agent, and waiting for a dial

/** Abort reason: the dial's own timeout fired. */
export class DialTimeout extends Failure {
  override name = 'DialTimeout';
  readonly code = 'AGENTGATE_DIAL_TIMEOUT';
}

/** Abort reason: nobody waits for the dial any more. */
export class DialAbandoned extends Failure {
  override name = 'DialAbandoned';
  readonly code = 'AGENTGATE_DIAL_ABANDONED';
}

export type DialOutcome = 'unreachable' | 'timeout' | 'cancelled';

const OUTCOME_CODES = {
  unreachable: 'AGENTGATE_DIAL_UNREACHABLE',
  timeout: 'AGENTGATE_DIAL_TIMEOUT',
  cancelled: 'AGENTGATE_DIAL_ABANDONED',
} as const satisfies Record<DialOutcome, FailureCode>;

/** A dial that failed, and how (src/gate/dial-outcome.ts says what follows from it). */
export class DialFailure extends Failure {
  override name = 'DialFailure';
  readonly code: (typeof OUTCOME_CODES)[DialOutcome];
  constructor(
    readonly outcome: DialOutcome,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = OUTCOME_CODES[outcome];
  }
}

/** One socket to the agent took longer than the connect bound to open. */
export class ConnectTimeout extends Failure {
  override name = 'ConnectTimeout';
  readonly code = 'AGENTGATE_CONNECT_TIMEOUT';
}

/** A socket still connecting was given up: nobody waits for it any more. */
export class ConnectAbandoned extends Failure {
  override name = 'ConnectAbandoned';
  readonly code = 'AGENTGATE_CONNECT_ABANDONED';
}

/** A waiter's own budget ran out before the dial it waited for settled: its answer alone. */
export class WaitExpired extends Failure {
  override name = 'WaitExpired';
  readonly code = 'AGENTGATE_WAIT_EXPIRED';
}

/** Refusal of a caller when its agent's dial already has the most waiters allowed. */
export class TooManyWaiters extends Failure {
  override name = 'TooManyWaiters';
  readonly code = 'AGENTGATE_TOO_MANY_WAITERS';
}

// ---- A call in flight

/** Abort reason: the agent sent no response headers in time. */
export class HeadersTimeout extends Failure {
  override name = 'HeadersTimeout';
  readonly code = 'AGENTGATE_PROXY_HEADERS_TIMEOUT';
}

/**
 * A request none of whose bytes can have reached the agent: no socket or stream could be opened
 * for it (refused, unresolvable, timed out, TLS refused). It is safe to say "nothing was sent".
 */
export class RequestNotSent extends Failure {
  override name = 'RequestNotSent';
  readonly code = 'AGENTGATE_PROXY_CONNECT_FAILED';
}

/** Abort reason: the caller's body grew past the limit. */
export class BodyTooLarge extends Failure {
  override name = 'BodyTooLarge';
  readonly code = 'AGENTGATE_PROXY_BODY_TOO_LARGE';
}

/** One message of an agent's MCP answer (a JSON body, or one event of a stream) is over the bound. */
export class McpMessageTooLarge extends Failure {
  override name = 'McpMessageTooLarge';
  readonly code = 'AGENTGATE_MCP_MESSAGE_TOO_LARGE';
  constructor(readonly limit: number) {
    super(`the agent's MCP message is larger than ${limit} bytes`);
  }
}

export type EndingCode = 'AGENT_CONNECTION_LOST' | 'UNAUTHENTICATED' | 'WORKSPACE_NOT_FOUND';

export interface Ending {
  code: EndingCode;
  /** Why, in a few words a caller can read ("its token was revoked"). */
  reason: string;
}

/**
 * Abort reason of work in flight (a proxied request or stream, an MCP call, a WebSocket) ended
 * from outside: its authority ended (a revoked token, a deleted workspace, an owner that is no
 * longer the token's) or its agent went away (a goodbye, a replacement, heartbeats that
 * stopped). It answers with the code a new call would get now.
 */
export class WorkEnded extends Failure {
  override name = 'WorkEnded';
  readonly code = 'AGENTGATE_WORK_ENDED';
  constructor(readonly ending: Ending) {
    super(ending.reason);
  }

  override get answerCode(): EndingCode {
    return this.ending.code;
  }
}
