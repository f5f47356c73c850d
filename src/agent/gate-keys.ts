// The gate's signing keys as the agent knows them (contract §4.1, 4.2): fetched from
// `GET /agent/keys` at start and again when a request names a key that is unknown or has
// expired here, at most once per second however many requests ask. The same answer tells the
// agent its own id, which every signature it accepts must name.
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { KID_PATTERN, publicKeyFromRaw } from '../auth/gate-signature.js';

/** What the agent's signature check needs; tests supply fixed keys. */
export interface GateKeySource {
  /** This agent's id, once the gate has told it. */
  readonly agentId: string | undefined;
  /** The unexpired key named `kid`, refetching (rate-limited) when it is not known. */
  find(kid: string): Promise<KeyObject | undefined>;
}

interface KnownKey {
  key: KeyObject;
  expiresAtMs: number;
}

export interface GateKeyRingOptions {
  gate: string;
  token: string;
  logger: Logger;
  /** Least time between two fetches. */
  minRefetchMs?: number;
  requestTimeoutMs?: number;
}

export class GateKeyRing implements GateKeySource {
  agentId: string | undefined;
  /** Fetches started so far (observability, tests). */
  fetches = 0;
  #keys = new Map<string, KnownKey>();
  #lastFetchMs = Number.NEGATIVE_INFINITY;
  #inFlight: Promise<void> | undefined;
  readonly #minRefetchMs: number;

  constructor(private readonly options: GateKeyRingOptions) {
    this.#minRefetchMs = options.minRefetchMs ?? 1000;
  }

  /** The unexpired key named `kid` without fetching. */
  known(kid: string, nowMs = Date.now()): KeyObject | undefined {
    const entry = this.#keys.get(kid);
    return entry && entry.expiresAtMs > nowMs ? entry.key : undefined;
  }

  async find(kid: string): Promise<KeyObject | undefined> {
    if (!KID_PATTERN.test(kid)) return undefined;
    // A key known here but past its expiry may have been extended since: ask again too.
    if (this.agentId !== undefined) {
      const hit = this.known(kid);
      if (hit) return hit;
    }
    await this.refresh();
    return this.known(kid);
  }

  /**
   * Fetches the keys, joining a fetch in flight; within the rate limit of the last one it waits
   * for the limit to pass (less than a second) rather than refusing a request from a new key.
   */
  refresh(): Promise<void> {
    if (this.#inFlight) return this.#inFlight;
    const waitMs = Math.max(0, this.#lastFetchMs + this.#minRefetchMs - performance.now());
    this.#inFlight = (async () => {
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
      this.#lastFetchMs = performance.now();
      this.fetches += 1;
      try {
        await this.#fetch();
      } catch (error) {
        // The keys known so far stay; the next unknown kid asks again.
        this.options.logger.warn({ err: (error as Error).message }, 'could not fetch the gate signing keys');
      }
    })().finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }

  async #fetch(): Promise<void> {
    const base = this.options.gate.endsWith('/') ? this.options.gate : `${this.options.gate}/`;
    const res = await fetch(new URL('agent/keys', base), {
      headers: { authorization: `Bearer ${this.options.token}` },
      signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 5_000),
    });
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new Error(`the gate answered ${res.status}`);
    }
    const body = (await res.json()) as { agentId?: unknown; keys?: unknown };
    if (typeof body.agentId !== 'string' || !Array.isArray(body.keys)) throw new Error('the gate sent keys in an unknown shape');
    const keys = new Map<string, KnownKey>();
    for (const item of body.keys as Array<Record<string, unknown>>) {
      const { kid, publicKey, expiresAt } = item;
      if (typeof kid !== 'string' || typeof publicKey !== 'string' || typeof expiresAt !== 'string' || !KID_PATTERN.test(kid)) continue;
      const expiresAtMs = Date.parse(expiresAt);
      try {
        if (Number.isFinite(expiresAtMs)) keys.set(kid, { key: publicKeyFromRaw(Buffer.from(publicKey, 'base64url')), expiresAtMs });
      } catch {
        this.options.logger.warn({ kid }, 'the gate sent a key that is not an Ed25519 public key');
      }
    }
    this.agentId = body.agentId;
    this.#keys = keys;
    this.options.logger.debug({ kids: [...keys.keys()] }, 'gate signing keys fetched');
  }
}
