// When the retry helper tries again, and after how long (pure: the clock and the random draw are
// arguments). Only retryable errors of the gate are retried; Retry-After is honoured, with jitter;
// nothing starts after the budget; and a proxied call that may have run at the agent is repeated
// only when it is idempotent.
import type { ErrorCode } from '../domain/errors.js';
import { AgentgateError } from './errors.js';

/** Methods whose repetition has the effect of one call (RFC 9110, 9.2.2). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

export interface RetryPolicy {
  /** Total time from the first attempt after which no attempt starts (ms). */
  budgetMs: number;
  /** Attempts in all, the first one included. */
  maxAttempts: number;
  /** First backoff bound, doubled per attempt up to `maxDelayMs` (ms), without Retry-After. */
  baseDelayMs: number;
  maxDelayMs: number;
  /**
   * Whether the proxied call is safe to repeat after an error that may follow its reaching the
   * agent (see REFUSED_BEFORE_SENDING for the others, always repeated). Unset: decided by its
   * method (GET, HEAD, OPTIONS, PUT, DELETE are; POST and PATCH are not). `conn()` and `agent()`
   * are always safe to repeat.
   */
  idempotent?: boolean | undefined;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { budgetMs: 10_000, maxAttempts: 3, baseDelayMs: 200, maxDelayMs: 2_000 };

export type RetryDecision =
  | { retry: true; delayMs: number }
  | { retry: false; reason: 'not-agentgate-error' | 'not-retryable' | 'not-idempotent' | 'attempts' | 'budget' };

/** Exponential backoff with full jitter: uniform in [0, min(max, base × 2^(attempt−1))). */
export function backoffMs(attempt: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, random: number): number {
  const bound = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random * bound);
}

/**
 * The wait the gate asked for, plus up to a fifth of it (or of the base delay, when it asked for
 * 0) so that callers refused together do not come back together.
 */
export function retryAfterDelayMs(retryAfterSeconds: number, policy: Pick<RetryPolicy, 'baseDelayMs'>, random: number): number {
  const asked = retryAfterSeconds * 1000;
  return Math.floor(asked + random * 0.2 * Math.max(asked, policy.baseDelayMs));
}

/**
 * The retryable codes of a proxied call whose request never left the gate (contract §6): the gate
 * refused it before sending, so repeating it repeats nothing, whatever its method. Every other
 * code may follow a request the agent received: AGENT_CONNECTION_LOST and AGENT_RESPONSE_TIMEOUT
 * by definition, GATE_UNREACHABLE (no answer, so no telling how far it went), UNEXPECTED_RESPONSE
 * (not the gate's answer), INTERNAL (a bug, anywhere), and a code newer than this client.
 */
export const REFUSED_BEFORE_SENDING: ReadonlySet<string> = new Set<ErrorCode>([
  'SHUTTING_DOWN',
  'OVERLOADED',
  'RATE_LIMITED',
  'DATABASE_UNAVAILABLE',
  'AGENT_UNREACHABLE',
  'AGENT_DIAL_TIMEOUT',
  'WORKSPACE_CHANGED',
]);

/** Whether a failed call may be sent again: it never reached the agent, or doing so twice does no harm. */
export function safeToRepeat(error: AgentgateError, policy: Pick<RetryPolicy, 'idempotent'>): boolean {
  if (!error.proxied || REFUSED_BEFORE_SENDING.has(error.code)) return true;
  return policy.idempotent ?? (error.method !== undefined && IDEMPOTENT_METHODS.has(error.method.toUpperCase()));
}

export interface RetryInput {
  error: unknown;
  /** Attempts made so far (1 after the first). */
  attempt: number;
  /** Time since the first attempt started (ms). */
  elapsedMs: number;
  /** A draw in [0, 1). */
  random: number;
}

export function retryDecision(input: RetryInput, policy: RetryPolicy): RetryDecision {
  const { error } = input;
  if (!(error instanceof AgentgateError)) return { retry: false, reason: 'not-agentgate-error' };
  if (!error.retryable) return { retry: false, reason: 'not-retryable' };
  if (!safeToRepeat(error, policy)) return { retry: false, reason: 'not-idempotent' };
  if (input.attempt >= policy.maxAttempts) return { retry: false, reason: 'attempts' };
  const delayMs =
    error.retryAfter === undefined ? backoffMs(input.attempt, policy, input.random) : retryAfterDelayMs(error.retryAfter, policy, input.random);
  if (input.elapsedMs + delayMs >= policy.budgetMs) return { retry: false, reason: 'budget' };
  return { retry: true, delayMs };
}
