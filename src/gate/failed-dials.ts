// Failed-dial memory (contract §5 step 8): after a dial fails, calls for that agent get the same
// code at once until the agent's row changes (a new heartbeat moves last_connected_at) or the
// backoff passes. Keyed on the agent and the last_connected_at the failure was seen with.
import { LRUCache } from 'lru-cache';

export type FailedDialCode = 'AGENT_UNREACHABLE' | 'AGENT_DIAL_TIMEOUT';

/** A source of monotonic milliseconds, never 0 (lru-cache reads 0 as "no start"); tests pass one they move by hand. */
export interface Clock {
  now(): number;
}

interface Failure {
  code: FailedDialCode;
  lastConnectedAt: number | null;
  detail: string;
}

export class FailedDials {
  readonly #cache: LRUCache<string, Failure> | undefined;

  constructor(backoffMs: number, options: { maxEntries?: number | undefined; clock?: Clock | undefined } = {}) {
    const { maxEntries = 10_000, clock } = options;
    this.#cache =
      backoffMs > 0
        ? new LRUCache({
            max: maxEntries,
            ttl: backoffMs,
            // A clock of the caller's is read on every check (the default caches `now` for 1 ms).
            ...(clock ? { perf: clock, ttlResolution: 0 } : {}),
          })
        : undefined;
  }

  remember(agentId: string, lastConnectedAt: number | null, code: FailedDialCode, detail: string): void {
    this.#cache?.set(agentId, { code, lastConnectedAt, detail });
  }

  /** The remembered failure, unless the agent has heartbeated since. */
  recall(agentId: string, lastConnectedAt: number | null): { failure: Failure; retryAfterSeconds: number } | undefined {
    const failure = this.#cache?.get(agentId);
    if (!failure || !this.#cache) return undefined;
    if (failure.lastConnectedAt !== lastConnectedAt) {
      this.#cache.delete(agentId);
      return undefined;
    }
    const remaining = this.#cache.getRemainingTTL(agentId);
    return { failure, retryAfterSeconds: Math.max(1, Math.ceil(remaining / 1000)) };
  }

  forget(agentId: string): void {
    this.#cache?.delete(agentId);
  }
}
