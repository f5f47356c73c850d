// One dial in flight per agent (SPEC 5 step 6). The dial runs with its own full bound, whoever
// started it. Each waiter waits with its own signal and its own deadline and stops waiting at
// once when either ends, without failing the others; the dial itself is aborted (with
// DialAbandoned) only when its last waiter has left.
import { DialAbandoned } from './dial.js';

/** Rejection of a waiter whose own caller went away. */
export class CallerGone extends Error {
  override name = 'CallerGone';
}

/** Rejection of a waiter whose own budget ran out before the dial settled: its answer alone. */
export class WaitExpired extends Error {
  override name = 'WaitExpired';
}

interface Flight<T> {
  controller: AbortController;
  waiters: number;
  promise: Promise<T>;
}

export class SharedDials<T> {
  readonly #flights = new Map<string, Flight<T>>();

  get inFlight(): number {
    return this.#flights.size;
  }

  /**
   * Waits for the dial of `key`, starting one with `start` if none is in flight, for at most
   * `waitMs`. `joined` is true when the dial was already in flight.
   */
  join(
    key: string,
    waiterSignal: AbortSignal,
    waitMs: number,
    start: (signal: AbortSignal) => Promise<T>,
  ): Promise<{ value: T; joined: boolean }> {
    if (waiterSignal.aborted) return Promise.reject(new CallerGone('the caller went away'));
    let flight = this.#flights.get(key);
    // A dial every waiter left is being cancelled; its cancel is nobody's answer, so start anew.
    if (flight?.controller.signal.aborted) flight = undefined;
    const joined = flight !== undefined;
    if (!flight) {
      const controller = new AbortController();
      const created: Flight<T> = { controller, waiters: 0, promise: Promise.resolve(undefined as T) };
      created.promise = start(controller.signal).finally(() => {
        if (this.#flights.get(key) === created) this.#flights.delete(key);
      });
      // A dial every waiter left still settles; nobody observes that, and that is fine.
      created.promise.catch(() => undefined);
      this.#flights.set(key, created);
      flight = created;
    }
    const current = flight;
    current.waiters += 1;
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = () => {
        done = true;
        clearTimeout(timer);
        waiterSignal.removeEventListener('abort', onAbort);
      };
      const leave = (why: Error) => {
        if (done) return;
        finish();
        current.waiters -= 1;
        if (current.waiters === 0) current.controller.abort(new DialAbandoned('every caller left'));
        reject(why);
      };
      const onAbort = () => leave(new CallerGone('the caller went away'));
      const timer = setTimeout(() => leave(new WaitExpired(`no answer from the agent within this call's ${Math.round(waitMs)} ms`)), Math.max(0, waitMs));
      waiterSignal.addEventListener('abort', onAbort, { once: true });
      current.promise.then(
        (value) => {
          if (done) return;
          finish();
          current.waiters -= 1;
          resolve({ value, joined });
        },
        (error: unknown) => {
          if (done) return;
          finish();
          current.waiters -= 1;
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }
}
