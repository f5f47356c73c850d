// The error catalogue (contract §6): every code is defined once, here, with its status, whether
// it is retryable, its title and, for the gate's codes, a hint an LLM can relay; and, in its
// guide, when it happens and what a chat server should do with it (docs/errors.md is generated
// from both). Codes are never reused; clients branch on them.

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

// ---- The guide: for every code, when it happens and what a chat server should do with it. The
// type makes a new code without its entry fail to compile.

export interface ErrorGuide {
  /** When the gate answers with the code. */
  meaning: string;
  /** What a chat server should do with it. */
  chatServer: string;
}

export const ERROR_GUIDE = {
  INVALID_REQUEST: {
    meaning:
      'The request is malformed: an id that is not a UUID, a body, query or header that does not validate (`?agent=` and ' +
      '`x-agentgate-agent` naming different agents, for one), or a proxied path with a dot segment, an encoded slash or a backslash. ' +
      '`agentgate/client` refuses such a path itself, sending nothing, with status 0.',
    chatServer: 'Fix the request: it is a bug on the caller’s side, and `detail` names what is wrong. Do not retry it as it is.',
  },
  UNAUTHENTICATED: {
    meaning: 'The bearer token is missing, unknown or revoked (an agent token also stops working when its workspace is deleted).',
    chatServer: 'Check the token the chat server is configured with. Do not retry with the same token, and do not tell the model.',
  },
  FORBIDDEN: {
    meaning: 'The token is valid, but its kind does not allow the route (a `conn` token on a control route, an agent token on a chat-server route).',
    chatServer: 'Use a token of scope `conn` (or `admin`) for the chat-server routes. A configuration error: do not retry.',
  },
  WORKSPACE_NOT_FOUND: {
    meaning:
      'No such workspace, or it was deleted, or the token cannot see it: a `conn` token confined to an owner gets exactly this ' +
      'answer for every other owner’s workspace.',
    chatServer: 'Relay the hint and stop calling tools on this workspace. Do not retry.',
  },
  AGENT_NOT_FOUND: {
    meaning: '`?agent=<name>` (or `x-agentgate-agent`) names no agent of the workspace’s current build.',
    chatServer: 'Call again without the name (the first agent) or with one of the agents the workspace has now. Do not retry as it is.',
  },
  NOT_FOUND: {
    meaning:
      'No such route, or a known path with a method it does not take. An agent’s own 404 on a proxied path is not this code: ' +
      'it is the agent’s answer, passed through with `x-agentgate-upstream: agent`.',
    chatServer: 'Check the base URL and the path: a bug on the caller’s side. Do not retry.',
  },
  WORKSPACE_HAS_NO_AGENT: {
    meaning: 'The workspace is not running: its latest build is a `stop` or a `delete`, or it has no agents.',
    chatServer:
      'Relay the hint (start the workspace). A chat server that can start workspaces may start it and call again once its agent ' +
      'has connected; retrying before that gives the same answer.',
  },
  AGENT_DISCONNECTED: {
    meaning:
      'A strong disconnect signal, answered at once without any dial: the agent said goodbye, or has sent no heartbeat for at least ' +
      '`AGENTGATE_DISCONNECT_GRACE_MS`. `disconnectedSeconds` says for how long.',
    chatServer:
      'Relay the hint to the model as the tool call’s result (restart the workspace). Do not retry: the answer stays the same ' +
      'until the workspace is restarted.',
  },
  AGENT_NEVER_CONNECTED: {
    meaning: 'The agent never connected within its `connection_timeout_seconds` after its build started.',
    chatServer: 'Relay the hint (restart the workspace and check its startup). Do not retry.',
  },
  WORKSPACE_CHANGED: {
    meaning: 'The workspace was rebuilt during the call, twice: its current agent changed during both dials the call may make.',
    chatServer: 'Retry the call: the next one reaches the current agent.',
  },
  PAYLOAD_TOO_LARGE: {
    meaning: 'The request body is larger than `AGENTGATE_BODY_LIMIT_BYTES`, as declared or as it streamed in.',
    chatServer: 'Do not retry it as it is: send a smaller body, or raise the limit.',
  },
  RATE_LIMITED: {
    meaning:
      'The token went over `AGENTGATE_RATE_LIMIT_PER_MIN`, or over its cap of concurrent requests ' +
      '(`AGENTGATE_MAX_REQUESTS_PER_TOKEN`) or WebSockets (`AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN`). `Retry-After` is set.',
    chatServer: 'Wait for `Retry-After`, then retry. Refusals that last mean the chat server needs a larger budget or fewer calls at once.',
  },
  AGENT_UNREACHABLE: {
    meaning:
      'The dial failed before its timeout (connection refused, DNS, TLS, a health check that is not 2xx), or one did within the ' +
      'last `AGENTGATE_DIAL_BACKOFF_MS` (then with `Retry-After`). On a proxied call, also: no connection to the agent could be ' +
      'opened, so nothing was sent.',
    chatServer: 'Retry a few times after `Retry-After` (or a short backoff); if it lasts, relay the hint. Never advise a restart on it.',
  },
  AGENT_CONNECTION_LOST: {
    meaning:
      'A proxied request failed because the connection to the agent broke before the response began, or because the agent went ' +
      'away while the request waited: it said goodbye, its workspace was rebuilt, or it stopped reporting heartbeats. The agent may have run it.',
    chatServer:
      'Retry only idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE). For the others, relay the hint and let the model decide ' +
      'whether the call is safe to repeat.',
  },
  DATABASE_UNAVAILABLE: {
    meaning:
      'agentgate could not read its database within `AGENTGATE_DB_TIMEOUT_MS`, and had no live cached connection to the agent to ' +
      'serve the call with. `Retry-After` is set.',
    chatServer: 'Retry after `Retry-After`. It is agentgate’s own trouble, not the workspace’s.',
  },
  SHUTTING_DOWN: {
    meaning: 'This agentgate process is draining (it got SIGTERM) and takes no new calls.',
    chatServer: 'Retry at once: behind a load balancer, the retry reaches another replica.',
  },
  NOT_READY: {
    meaning: 'Only from `GET /readyz`: the database does not answer, migrations are not current, or the process is draining; `detail` says which.',
    chatServer: 'Nothing: readiness probes and load balancers read it. The chat-server routes never answer it.',
  },
  OVERLOADED: {
    meaning:
      'The process sheds load: its event loop lags by more than a second, or too many callers already wait for one agent’s dial. ' +
      '`Retry-After` is set.',
    chatServer: 'Wait for `Retry-After`, then retry. Refusals that last call for more replicas.',
  },
  AGENT_DIAL_TIMEOUT: {
    meaning:
      'The agent did not answer its health check within `AGENTGATE_DIAL_TIMEOUT_MS` while the caller waited, or a dial within the ' +
      'last `AGENTGATE_DIAL_BACKOFF_MS` timed out (then with `Retry-After`). A caller that leaves is never given this code.',
    chatServer: 'Retry a few times after `Retry-After`; if it lasts, relay the hint. Never advise a restart on it.',
  },
  AGENT_RESPONSE_TIMEOUT: {
    meaning:
      'A proxied request got no response headers from the agent within `AGENTGATE_PROXY_HEADERS_TIMEOUT_MS`. The agent may still ' +
      'be running it. Through the MCP front door, also: the agent\'s MCP response, once begun, sent nothing (no event, no ' +
      'keep-alive comment) for that long, or a `tools/list` got no answer within the dial bound plus that bound.',
    chatServer:
      'As for `AGENT_CONNECTION_LOST`: retry only idempotent requests. A tool that runs long should send its headers early and ' +
      'stream the rest.',
  },
  INTERNAL: {
    meaning: 'A bug in agentgate. It is logged with the request id (`x-request-id`); the body holds nothing internal.',
    chatServer: 'Retry once if the call is idempotent, and report the request id.',
  },
} as const satisfies Record<ErrorCode, ErrorGuide>;
