// The reference agent's liveness loop: a heartbeat at once and then every interval; when the
// gate is down it keeps trying with backoff instead of dying; on shutdown it says goodbye.
import type { Logger } from 'pino';

export interface HeartbeatOptions {
  gate: string;
  token: string;
  intervalMs: number;
  logger: Logger;
  /** Bound on one request to the gate. */
  requestTimeoutMs?: number;
}

export class HeartbeatLoop {
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #failures = 0;
  #inFlight: Promise<void> | undefined;
  /** Successful heartbeats so far. */
  sent = 0;

  constructor(private readonly options: HeartbeatOptions) {}

  start(): void {
    this.#tick();
  }

  async #post(path: string): Promise<number> {
    // Relative to the gate's URL, so a gate behind a path prefix (https://host/gate/) works.
    const base = this.options.gate.endsWith('/') ? this.options.gate : `${this.options.gate}/`;
    const res = await fetch(new URL(path.replace(/^\//, ''), base), {
      method: 'POST',
      headers: { authorization: `Bearer ${this.options.token}` },
      signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 5_000),
    });
    await res.body?.cancel();
    return res.status;
  }

  #tick(): void {
    if (this.#stopped) return;
    this.#inFlight = this.#post('/agent/heartbeat').then(
      (status) => {
        if (status === 204) {
          if (this.#failures > 0) this.options.logger.info({ afterFailures: this.#failures }, 'heartbeats resumed');
          this.#failures = 0;
          this.sent += 1;
        } else {
          this.#failures += 1;
          // 401: the token is wrong or the workspace was deleted; keep trying, loudly.
          this.options.logger.warn({ status, failures: this.#failures }, 'the gate refused the heartbeat');
        }
      },
      (error: unknown) => {
        this.#failures += 1;
        this.options.logger.warn({ err: (error as Error).message, failures: this.#failures }, 'heartbeat failed; the gate may be down');
      },
    );
    void this.#inFlight.then(() => {
      if (this.#stopped) return;
      // After failures, retry sooner than the interval (from 500 ms, doubling), never later.
      const delay = this.#failures === 0 ? this.options.intervalMs : Math.min(this.options.intervalMs, 500 * 2 ** Math.min(this.#failures - 1, 10));
      this.#timer = setTimeout(() => this.#tick(), delay);
    });
  }

  /** Stops the loop and tells the gate this agent is going away (graceful shutdown). */
  async stop(sayGoodbye = true): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#inFlight;
    if (!sayGoodbye) return;
    try {
      const status = await this.#post('/agent/disconnect');
      this.options.logger.info({ status }, 'said goodbye to the gate');
    } catch (error) {
      this.options.logger.warn({ err: (error as Error).message }, 'could not say goodbye to the gate');
    }
  }
}
