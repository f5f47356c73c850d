// One answer for many askers: while a probe runs, every caller shares it, and its answer is reused
// for `reuseMs` after it settled. What the operations routes run on behalf of unauthenticated
// callers (a database ping, a metrics scrape) then costs at most one run at a time, however many
// sockets loop on them, instead of one run (and one pooled connection) per request.

export class SharedProbe<T> {
  #running: Promise<T> | undefined;
  #last: { value: Promise<T>; at: number } | undefined;

  constructor(
    private readonly run: () => Promise<T>,
    private readonly reuseMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get(): Promise<T> {
    if (this.#running) return this.#running;
    if (this.#last && this.now() - this.#last.at < this.reuseMs) return this.#last.value;
    const running = this.run();
    this.#running = running;
    const settled = () => {
      this.#running = undefined;
      this.#last = { value: running, at: this.now() };
    };
    running.then(settled, settled);
    return running;
  }
}
