// Keeps this process's public signing key in gate_signing_keys (contract §4.1): published at start,
// its expiry pushed ahead on a timer while the process runs, deleted when it stops. A failed
// refresh is logged and retried on the next tick; the key lifetime leaves room for several.
import type { Kysely } from 'kysely';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { Database } from '../db/schema.js';
import { deleteSigningKey, publishSigningKey } from '../db/signing-keys-repo.js';
import type { GateSigningKey } from './gate-signing-key.js';

/** Expiry is kept 9 to 10 minutes ahead: contract §4.1 asks for at least 5. */
export const DEFAULT_KEY_LIFETIME_MS = 10 * 60_000;
export const DEFAULT_KEY_REFRESH_MS = 60_000;

export interface KeyPublisherOptions {
  db: Kysely<Database>;
  key: GateSigningKey;
  logger: Logger;
  /** How far ahead each refresh sets expires_at (tests shorten it). */
  lifetimeMs?: number;
  /** How often expires_at is pushed ahead; must be well under the lifetime. */
  refreshMs?: number;
}

export class KeyPublisher {
  readonly lifetimeMs: number;
  readonly refreshMs: number;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> | undefined;
  #stopped = false;

  constructor(private readonly options: KeyPublisherOptions) {
    this.lifetimeMs = options.lifetimeMs ?? DEFAULT_KEY_LIFETIME_MS;
    this.refreshMs = options.refreshMs ?? DEFAULT_KEY_REFRESH_MS;
    if (!(this.refreshMs > 0 && this.refreshMs < this.lifetimeMs)) throw new Error('the key refresh interval must be shorter than its lifetime');
  }

  get kid(): string {
    return this.options.key.kid;
  }

  /** Publishes the key (a failure here fails the start: agents would refuse every request). */
  async start(): Promise<void> {
    await this.#publish();
    this.options.logger.info({ kid: this.kid, lifetimeMs: this.lifetimeMs }, 'published the gate signing key');
    this.#timer = setInterval(() => this.#refresh(), this.refreshMs);
    this.#timer.unref();
  }

  #publish(): Promise<void> {
    const { db, key } = this.options;
    return publishSigningKey(db, key.kid, key.publicKeyRaw, this.lifetimeMs);
  }

  #refresh(): void {
    if (this.#stopped || this.#inFlight) return;
    this.#inFlight = this.#publish()
      .catch((error: unknown) => {
        this.options.logger.warn({ kid: this.kid, err: (error as Error).message }, 'could not refresh the gate signing key');
      })
      .finally(() => (this.#inFlight = undefined));
  }

  /** Stops refreshing without deleting the row: what a process that dies leaves behind (tests). */
  async halt(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#inFlight;
  }

  /** Stops refreshing and deletes the row; errors are logged (the key expires anyway). */
  async stop(): Promise<void> {
    await this.halt();
    try {
      await deleteSigningKey(this.options.db, this.kid);
      this.options.logger.info({ kid: this.kid }, 'withdrew the gate signing key');
    } catch (error) {
      this.options.logger.warn({ kid: this.kid, err: (error as Error).message }, 'could not withdraw the gate signing key; it expires by itself');
    }
  }
}
