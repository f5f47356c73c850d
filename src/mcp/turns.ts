// Turns: at most `size` holders at once, the others waiting in order. A wait ends with its
// signal (the caller left, or cancelled), so that nobody waits for a turn nobody will use.

export class Turns {
  #free: number;
  readonly #waiting: Array<{ grant: () => void }> = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** Resolves with the release of a turn (idempotent); rejects with the signal's reason. */
  take(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    if (this.#free > 0) {
      this.#free -= 1;
      return Promise.resolve(this.#release());
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal.removeEventListener('abort', onAbort);
          resolve(this.#release());
        },
      };
      const onAbort = () => {
        const at = this.#waiting.indexOf(waiter);
        if (at !== -1) this.#waiting.splice(at, 1);
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #release(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      // The turn passes straight on: nobody can take it in between.
      if (next) next.grant();
      else this.#free += 1;
    };
  }
}
