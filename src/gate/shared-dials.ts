// One dial in flight per agent (contract §5 step 6). The dial runs with its own full bound, whoever
// started it. Each waiter waits with its own signal and its own deadline and stops waiting at
// once when either ends, without failing the others; the dial itself is aborted (with
// DialAbandoned) only when its last waiter has left.
//
// Waiters are cheap and bounded: one small object each (its own abort listener and timer, no
// closures and no promise reaction of its own: the flight settles them all from one), and at
// most `maxWaiters` per agent; beyond that a caller is refused at once (TooManyWaiters).
import { CallerGone, DialAbandoned, TooManyWaiters, WaitExpired } from '../domain/failures.js';




export const DEFAULT_MAX_WAITERS = 1_000;

interface Flight<T> {
  controller: AbortController;
  waiters: Set<Waiter<T>>;
  promise: Promise<T>;
}

/** One caller waiting on a flight; it is its own abort listener (handleEvent), so no closure. */
class Waiter<T> {
  timer: NodeJS.Timeout | undefined;

  constructor(
    readonly flight: Flight<T>,
    readonly signal: AbortSignal,
    readonly joined: boolean,
    readonly waitMs: number,
    readonly resolve: (result: { value: T; joined: boolean }) => void,
    readonly reject: (error: Error) => void,
  ) {}

  /** Stops waiting; false when it already had. */
  detach(): boolean {
    if (!this.flight.waiters.delete(this)) return false;
    clearTimeout(this.timer);
    this.signal.removeEventListener('abort', this);
    return true;
  }

  /** Leaves before the dial settled; the last waiter to leave cancels the dial. */
  leave(why: Error): void {
    if (!this.detach()) return;
    if (this.flight.waiters.size === 0) this.flight.controller.abort(new DialAbandoned('every caller left'));
    this.reject(why);
  }

  handleEvent(): void {
    this.leave(new CallerGone());
  }
}

/** A waiter's timer callback: one function for all, the waiter passed as its argument. */
function expire<T>(waiter: Waiter<T>): void {
  waiter.leave(new WaitExpired(`no answer from the agent within this call's ${Math.round(waiter.waitMs)} ms`));
}

export interface SharedDialsOptions<T> {
  maxWaiters?: number;
  /**
   * What each waiter is handed of a dial's value, taken at the moment the dial settles, before
   * anything else can run (a lease of its own on the new connection, say). Default: the value.
   */
  handOut?: (value: T) => T;
  /** Called once every waiter has been handed its share (the dial's own lease returned, say). */
  settled?: (value: T) => void;
}

export class SharedDials<T> {
  readonly #flights = new Map<string, Flight<T>>();
  readonly #maxWaiters: number;
  readonly #handOut: (value: T) => T;
  readonly #settled: (value: T) => void;

  constructor(options: SharedDialsOptions<T> = {}) {
    this.#maxWaiters = options.maxWaiters ?? DEFAULT_MAX_WAITERS;
    this.#handOut = options.handOut ?? ((value) => value);
    this.#settled = options.settled ?? (() => undefined);
  }

  get inFlight(): number {
    return this.#flights.size;
  }

  /** Callers waiting on the dial of `key` now. */
  waiters(key: string): number {
    return this.#flights.get(key)?.waiters.size ?? 0;
  }

  /**
   * Waits for the dial of `key`, starting one with `start` if none is in flight, for at most
   * `waitMs`. `joined` is true when the dial was already in flight. Rejects with
   * TooManyWaiters, without waiting, when the dial has `maxWaiters` waiters already.
   */
  join(
    key: string,
    waiterSignal: AbortSignal,
    waitMs: number,
    start: (signal: AbortSignal) => Promise<T>,
  ): Promise<{ value: T; joined: boolean }> {
    if (waiterSignal.aborted) return Promise.reject(new CallerGone());
    let flight = this.#flights.get(key);
    // A dial every waiter left is being cancelled; its cancel is nobody's answer, so start anew.
    if (flight?.controller.signal.aborted) flight = undefined;
    const joined = flight !== undefined;
    if (flight && flight.waiters.size >= this.#maxWaiters) {
      return Promise.reject(new TooManyWaiters(`${this.#maxWaiters} calls are already waiting for this agent's dial`));
    }
    if (!flight) flight = this.#start(key, start);
    const current = flight;
    return new Promise((resolve, reject) => {
      const waiter = new Waiter<T>(current, waiterSignal, joined, waitMs, resolve, reject);
      current.waiters.add(waiter);
      waiter.timer = setTimeout(expire<T>, Math.max(0, waitMs), waiter);
      waiterSignal.addEventListener('abort', waiter, { once: true });
    });
  }

  #start(key: string, start: (signal: AbortSignal) => Promise<T>): Flight<T> {
    const controller = new AbortController();
    const flight: Flight<T> = { controller, waiters: new Set(), promise: Promise.resolve(undefined as T) };
    flight.promise = start(controller.signal).finally(() => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
    });
    // One reaction settles every waiter still there; a dial every waiter left settles unobserved.
    flight.promise.then(
      (value) => {
        try {
          for (const waiter of [...flight.waiters]) if (waiter.detach()) waiter.resolve({ value: this.#handOut(value), joined: waiter.joined });
        } finally {
          this.#settled(value);
        }
      },
      (error: unknown) => {
        const reason = error instanceof Error ? error : new Error(String(error));
        for (const waiter of [...flight.waiters]) if (waiter.detach()) waiter.reject(reason);
      },
    );
    this.#flights.set(key, flight);
    return flight;
  }
}
