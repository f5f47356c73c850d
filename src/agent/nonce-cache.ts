// The nonces an agent accepted in the last 120 s (contract §4.1), so a captured request cannot be
// sent again. Entries expire in insertion order; the size is capped so memory stays bounded.
import { NONCE_RETENTION_SECONDS } from '../auth/gate-signature.js';

export type NonceResult = 'new' | 'seen' | 'full';

export class NonceCache {
  readonly #seen = new Map<string, number>();
  readonly #retentionMs: number;
  readonly #maxEntries: number;

  constructor(options: { retentionMs?: number; maxEntries?: number } = {}) {
    this.#retentionMs = options.retentionMs ?? NONCE_RETENTION_SECONDS * 1000;
    this.#maxEntries = options.maxEntries ?? 200_000;
  }

  get size(): number {
    return this.#seen.size;
  }

  /**
   * Records a nonce. 'full' when the cap is reached by nonces still within their retention:
   * forgetting one early would let it be replayed, so the request is refused instead.
   */
  remember(nonce: string, nowMs = Date.now()): NonceResult {
    this.#prune(nowMs);
    const until = this.#seen.get(nonce);
    if (until !== undefined && until > nowMs) return 'seen';
    if (this.#seen.size >= this.#maxEntries) return 'full';
    this.#seen.set(nonce, nowMs + this.#retentionMs);
    return 'new';
  }

  #prune(nowMs: number): void {
    for (const [nonce, until] of this.#seen) {
      if (until > nowMs) break;
      this.#seen.delete(nonce);
    }
  }
}
