// `agentgate/client`: a typed client for chat servers (ESM). It imports nothing beyond Node's
// globals (fetch, Headers, URL, WebSocket) and the catalogue and path rule of src/domain; the
// package that carries it still depends on everything the server needs.
export {
  AgentgateClient,
  createClient,
  type AgentResult,
  type CallOptions,
  type ClientOptions,
  type ConnResult,
  type ProxyBody,
  type ProxyRequestInit,
  type WebSocketClass,
  type WebSocketLike,
  type WebSocketOptions,
} from './client.js';
export * from './errors.js';
export { isAgentAnswer, parseRetryAfter, UPSTREAM_HEADER } from './answers.js';
export { withRetry, type AttemptContext, type RetryOptions } from './retry.js';
export {
  backoffMs,
  DEFAULT_RETRY_POLICY,
  IDEMPOTENT_METHODS,
  REFUSED_BEFORE_SENDING,
  retryDecision,
  safeToRepeat,
  type RetryDecision,
  type RetryPolicy,
} from './retry-policy.js';
export {
  AGENT_STATUSES,
  PROBLEM_KEYS,
  PROXY_METHODS,
  RESPONSE_KEYS,
  ROUTES,
  type AgentInfo,
  type AgentResponse,
  type AgentStatus,
  type ConnectionInfo,
  type ConnResponse,
} from './types.js';
export { ERROR_CATALOGUE, type ErrorCode, type Problem } from '../domain/errors.js';
