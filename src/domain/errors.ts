// The error catalogue (contract §6): every code is defined once, with its status, whether it
// is retryable, its title and, for the gate's codes, a hint an LLM can relay. Codes are never
// reused; clients branch on them.

export const ERROR_CATALOGUE = {
  INVALID_REQUEST: { status: 400, retryable: false, title: 'Invalid request' },
  UNAUTHENTICATED: { status: 401, retryable: false, title: 'Authentication required' },
  FORBIDDEN: { status: 403, retryable: false, title: 'Forbidden' },
  WORKSPACE_NOT_FOUND: {
    status: 404,
    retryable: false,
    title: 'Workspace not found',
    hint: 'The workspace does not exist or was deleted; create a new workspace to continue.',
  },
  AGENT_NOT_FOUND: {
    status: 404,
    retryable: false,
    title: 'Agent not found',
    hint: 'No agent of that name runs in the current build of the workspace; use one of its current agents.',
  },
  NOT_FOUND: { status: 404, retryable: false, title: 'Not found' },
  WORKSPACE_HAS_NO_AGENT: {
    status: 409,
    retryable: false,
    title: 'Workspace has no agent',
    hint: 'The workspace is not running; start the workspace, then try again.',
  },
  AGENT_DISCONNECTED: {
    status: 409,
    retryable: false,
    title: 'Agent disconnected',
    hint: 'The workspace agent is disconnected and cannot run tools; restart the workspace (stop it, then start it) and try again.',
  },
  AGENT_NEVER_CONNECTED: {
    status: 409,
    retryable: false,
    title: 'Agent never connected',
    hint: 'The workspace agent never connected after the workspace started; restart the workspace (stop it, then start it) and check its startup logs.',
  },
  WORKSPACE_CHANGED: {
    status: 409,
    retryable: true,
    title: 'Workspace changed',
    hint: 'The workspace was rebuilt while connecting to it; try again.',
  },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false, title: 'Payload too large' },
  RATE_LIMITED: { status: 429, retryable: true, title: 'Rate limited' },
  AGENT_UNREACHABLE: {
    status: 502,
    retryable: true,
    title: 'Agent unreachable',
    hint: 'The workspace agent could not be reached just now; it may answer on the next attempt, so try again shortly.',
  },
  AGENT_CONNECTION_LOST: {
    status: 502,
    retryable: true,
    title: 'Agent connection lost',
    hint: 'The connection to the workspace agent broke during the call; it may answer on the next attempt, so try again if the call is safe to repeat.',
  },
  DATABASE_UNAVAILABLE: {
    status: 503,
    retryable: true,
    title: 'Database unavailable',
    hint: 'agentgate cannot read its database right now; try again in a few seconds.',
  },
  SHUTTING_DOWN: { status: 503, retryable: true, title: 'Shutting down' },
  NOT_READY: { status: 503, retryable: true, title: 'Not ready' },
  OVERLOADED: { status: 503, retryable: true, title: 'Overloaded' },
  AGENT_DIAL_TIMEOUT: {
    status: 504,
    retryable: true,
    title: 'Agent dial timed out',
    hint: 'The workspace agent did not answer in time; it may answer on the next attempt, so try again shortly.',
  },
  AGENT_RESPONSE_TIMEOUT: {
    status: 504,
    retryable: true,
    title: 'Agent response timed out',
    hint: 'The workspace agent did not start answering in time; it may answer on the next attempt, so try again if the call is safe to repeat.',
  },
  INTERNAL: { status: 500, retryable: true, title: 'Internal error' },
} as const satisfies Record<string, { status: number; retryable: boolean; title: string; hint?: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** Extra, machine-readable members of a problem (contract §6). */
export interface ProblemExtras {
  workspaceId?: string;
  agentId?: string;
  agentStatus?: string;
  disconnectedSeconds?: number;
  /** Seconds; sent as the Retry-After header, not in the body. */
  retryAfter?: number;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  retryable: boolean;
  hint?: string;
  workspaceId?: string;
  agentId?: string;
  agentStatus?: string;
  disconnectedSeconds?: number;
}

/**
 * An error that is meant to reach the caller as problem+json. It is an answer, not a fault: it
 * carries no stack (capturing one was the costliest part of a refusal), and it is logged by its
 * code. An unexpected failure keeps its own error, with its stack, as the cause it is logged with.
 */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly code: ErrorCode;
  readonly detail: string;
  readonly extras: ProblemExtras;

  constructor(code: ErrorCode, detail: string, extras: ProblemExtras = {}) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(`${code}: ${detail}`);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.code = code;
    this.detail = detail;
    this.extras = extras;
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status;
  }

  toProblem(): Problem {
    const entry: { status: number; retryable: boolean; title: string; hint?: string } = ERROR_CATALOGUE[this.code];
    const { retryAfter: _retryAfter, ...extras } = this.extras;
    return {
      type: `urn:agentgate:error:${this.code.toLowerCase().replaceAll('_', '-')}`,
      title: entry.title,
      status: entry.status,
      detail: this.detail,
      code: this.code,
      retryable: entry.retryable,
      ...(entry.hint === undefined ? {} : { hint: entry.hint }),
      ...extras,
    };
  }
}
