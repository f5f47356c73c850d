// Per-token caps on concurrent work (AGENTGATE_MAX_REQUESTS_PER_TOKEN,
// AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN): one token cannot hold every database connection or file
// descriptor of the process. Over a cap the caller gets 429 RATE_LIMITED with Retry-After.
import { ApiError } from '../domain/errors.js';
import type { Principal } from './principal.js';

export type SlotKind = 'request' | 'websocket';

/** The key a token's slots are counted under (an agent's token counts for its agent). */
export function principalKey(principal: Principal): string {
  return principal.kind === 'agent' ? `agent:${principal.agentId}` : `token:${principal.tokenId}`;
}

export class TokenConcurrency {
  readonly #limits: Record<SlotKind, number>;
  readonly #held: Record<SlotKind, Map<string, number>> = { request: new Map(), websocket: new Map() };

  constructor(limits: { requests: number; websockets: number }) {
    this.#limits = { request: limits.requests, websocket: limits.websockets };
  }

  /** Slots held now for a principal (tests and diagnostics). */
  held(kind: SlotKind, principal: Principal): number {
    return this.#held[kind].get(principalKey(principal)) ?? 0;
  }

  /**
   * Takes a slot or throws RATE_LIMITED. The returned release may be called any number of times
   * (a response's finish and its close, say); it frees the slot once.
   */
  acquire(kind: SlotKind, principal: Principal): () => void {
    const key = principalKey(principal);
    const counts = this.#held[kind];
    const held = counts.get(key) ?? 0;
    if (held >= this.#limits[kind]) {
      const what = kind === 'request' ? 'requests in flight' : 'open WebSockets';
      throw new ApiError('RATE_LIMITED', `over the limit of ${this.#limits[kind]} ${what} for this token`, { retryAfter: 1 });
    }
    counts.set(key, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const now = (counts.get(key) ?? 1) - 1;
      if (now > 0) counts.set(key, now);
      else counts.delete(key);
    };
  }
}
