// Internal failures carry a stable `code`, as undici's errors do, and this table is the one
// place that says which API code (SPEC 6) each one becomes. Code branches on these codes (and on
// undici's, Node's and PostgreSQL's), never on an error's message.
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
  /** This call's own budget ran out while it waited for a shared dial. */
  AGENTGATE_WAIT_EXPIRED: 'AGENT_DIAL_TIMEOUT',
  /** Too many calls already wait for the agent's dial. */
  AGENTGATE_TOO_MANY_WAITERS: 'OVERLOADED',
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

/** The API code of an internal failure code; undefined for codes not in the table. */
export function apiCodeOf(code: unknown): ErrorCode | null | undefined {
  return typeof code === 'string' && Object.hasOwn(FAILURE_API_CODES, code) ? FAILURE_API_CODES[code as FailureCode] : undefined;
}

/** The API code of an error carrying one of our codes; undefined for any other error. */
export function apiCodeOfError(error: unknown): ErrorCode | null | undefined {
  return error instanceof Error ? apiCodeOf((error as { code?: unknown }).code) : undefined;
}

/** The caller's answer for an internal failure that has one. */
export function failureAnswer<C extends FailureCode>(code: C, detail: string, extras?: ProblemExtras): ApiError & { code: NonNullable<ApiCodeOf<C>> } {
  const api = FAILURE_API_CODES[code];
  // A code whose table entry is null has nobody to answer; asking for its answer is a bug.
  if (api === null) throw new Error(`${code} has no API answer`);
  return new ApiError(api, detail, extras) as ApiError & { code: NonNullable<ApiCodeOf<C>> };
}
