// For every code of the catalogue: when it happens (contract §6) and what a chat server should
// do with it. docs/errors.md is generated from this table and the catalogue; the type makes a
// new code without its entry fail to compile.
import type { ErrorCode } from './errors.js';

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
