// The opt-in retry helper: runs a call again while the policy of retry-policy.ts says so.
import type { AgentgateError } from './errors.js';
import { DEFAULT_RETRY_POLICY, retryDecision, type RetryPolicy } from './retry-policy.js';

export interface RetryOptions extends Partial<RetryPolicy> {
  /** Stops waiting and trying: the helper rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
  /** Called before each wait, e.g. to log the error that is being retried. */
  onRetry?: ((event: { error: AgentgateError; attempt: number; delayMs: number }) => void) | undefined;
  /** A draw in [0, 1) for the jitter; Math.random by default. */
  random?: (() => number) | undefined;
}

export interface AttemptContext {
  /** 1 for the first attempt. */
  attempt: number;
  signal: AbortSignal | undefined;
}

/**
 * Runs `fn`, and again after a retryable AgentgateError, until it succeeds, the error is not
 * retryable, the proxied call may have run at the agent and is not idempotent, the attempts or
 * the budget run out, or the signal aborts. The error of the last attempt is thrown as it is. The budget decides whether
 * another attempt starts; it does not cut one short (give the calls a signal for that).
 * `fn` must build its request afresh on every attempt: a streamed body can be sent only once.
 */
export async function withRetry<T>(fn: (context: AttemptContext) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const { signal, onRetry, random = Math.random, ...given } = options;
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...dropUndefined(given) };
  const started = performance.now();
  for (let attempt = 1; ; attempt += 1) {
    signal?.throwIfAborted();
    try {
      return await fn({ attempt, signal });
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      const decision = retryDecision({ error, attempt, elapsedMs: performance.now() - started, random: random() }, policy);
      if (!decision.retry) throw error;
      onRetry?.({ error: error as AgentgateError, attempt, delayMs: decision.delayMs });
      await sleep(decision.delayMs, signal);
    }
  }
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- an abort surfaces as the signal's own reason, as with fetch
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- as above
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
