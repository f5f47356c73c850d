// A pg pool whose every query is bounded in time, pool wait included (contract §5 step 9).
// pg bounds the pool wait (connectionTimeoutMillis) and a query (query_timeout) separately;
// here one budget covers both, and a client whose query timed out is destroyed rather than
// returned to the pool, where it would block the next caller behind a query that never ends.
// pg-pool listens for a client's socket errors only while the client is idle; while one is
// checked out here, its errors are ours to catch, or a failover (connections reset while
// queries are in flight) would be an uncaught 'error' that ends the process.
import pg from 'pg';
import type { PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';
import { DatabaseTimeout, DatabaseUnavailable } from '../domain/failures.js';

/** pg's own errors carry no code; the server's carry a SQLSTATE and the network's an errno. */
const hasCode = (error: unknown): boolean => typeof (error as { code?: unknown } | null)?.code === 'string';

/**
 * The least time a query is sent with: below it a healthy round trip would likely be cut
 * short, and the cut destroys a pooled connection; the caller is answered "too late" instead.
 */
export const MIN_QUERY_BUDGET_MS = 50;

export interface BoundedPoolOptions {
  connectionString: string;
  timeoutMs: number;
  max?: number;
  applicationName?: string;
  onError: (error: Error) => void;
}

interface RawConnection {
  connection?: { stream?: { destroy(): void } };
}

export interface QueryTiming {
  (seconds: number, ok: boolean): void;
}

export class BoundedPool implements PostgresPool {
  readonly pg: pg.Pool;
  readonly timeoutMs: number;
  onQuery: QueryTiming | undefined;
  readonly onError: (error: Error) => void;

  constructor(options: BoundedPoolOptions) {
    this.timeoutMs = options.timeoutMs;
    this.onError = options.onError;
    this.pg = new pg.Pool({
      connectionString: options.connectionString,
      max: options.max ?? 10,
      // Opening a connection gets its own, longer bound: pg-pool destroys a connection still
      // opening when this expires, so with the query bound here a server slower to accept
      // than that bound (under load, after a failover) would never refill the pool. Each
      // caller's wait is bounded by its own budget instead (connect below), and a connection
      // that opens after its caller gave up serves the next one.
      connectionTimeoutMillis: openTimeoutMs(options.timeoutMs),
      // The server cancels what the client gave up on, so locks are not held by ghosts.
      statement_timeout: options.timeoutMs,
      idle_in_transaction_session_timeout: Math.max(options.timeoutMs * 5, 10_000),
      application_name: options.applicationName ?? 'agentgate',
      keepAlive: true,
      idleTimeoutMillis: 30_000,
    });
    // An idle client's socket error is emitted here; unhandled, it would kill the process.
    this.pg.on('error', options.onError);
  }

  /** The least budget worth a query: MIN_QUERY_BUDGET_MS, or the whole bound if smaller. */
  get minBudgetMs(): number {
    return Math.min(MIN_QUERY_BUDGET_MS, this.timeoutMs);
  }

  /** A client, waiting at most `budgetMs` for one. */
  async connect(budgetMs = this.timeoutMs): Promise<PostgresPoolClient> {
    const started = performance.now();
    // A call still running when shutdown closed the pool (its grace ran out).
    if (this.pg.ending) throw new DatabaseUnavailable('the database pool is closed: agentgate is shutting down');
    let client: pg.PoolClient;
    try {
      client = await this.#connectWithin(Math.min(budgetMs, this.timeoutMs));
    } catch (error) {
      // Without a code, a failed connect is pg's own report of a connection that timed out or
      // ended while opening; a pool that is shutting down says so too, and stays a plain error.
      if (hasCode(error) || this.pg.ending) throw error;
      throw new DatabaseUnavailable('no database connection could be opened', { cause: error });
    }
    return new BoundedClient(client, this, started);
  }

  /** pg cannot withdraw a waiting connect; a client that arrives after we gave up goes back. */
  #connectWithin(budgetMs: number): Promise<pg.PoolClient> {
    const pending = this.pg.connect();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        pending.then((late) => late.release(), () => undefined);
        reject(new DatabaseTimeout(`timed out waiting ${Math.round(budgetMs)} ms for a database connection`));
      }, Math.max(0, budgetMs));
    });
    return Promise.race([pending, expired]).finally(() => clearTimeout(timer));
  }

  /**
   * Runs one named (prepared once per connection) statement outside Kysely: the gate's hot
   * read, which is parsed and planned once per connection instead of on every call.
   */
  async queryNamed<R>(name: string, text: string, values: unknown[], budgetMs = this.timeoutMs): Promise<R[]> {
    const budget = Math.min(budgetMs, this.timeoutMs);
    const client = (await this.connect(budget)) as BoundedClient;
    try {
      return (await client.run<R>({ name, text, values }, budget)).rows;
    } finally {
      client.release();
    }
  }

  async end(): Promise<void> {
    await this.pg.end();
  }
}

class BoundedClient implements PostgresPoolClient {
  #broken = false;
  #released = false;
  #budgetStart: number;

  constructor(
    private readonly client: pg.PoolClient,
    private readonly pool: BoundedPool,
    acquiredFrom: number,
  ) {
    this.#budgetStart = acquiredFrom;
    client.on('error', this.#onError);
  }

  // The query in flight (if any) is rejected with the same error; this only keeps the process
  // alive and makes sure the broken client is destroyed on release, not reused.
  readonly #onError = (error: Error) => {
    this.#broken = true;
    this.pool.onError(error);
  };

  // Kysely never passes a cursor here (no `cursor` in the dialect config), only SQL text.
  query = (async <R>(sql: string, parameters: readonly unknown[]): Promise<PostgresQueryResult<R>> => {
    const result = await this.run<R>({ text: sql, values: parameters as unknown[] });
    return result as unknown as PostgresQueryResult<R>;
  }) as PostgresPoolClient['query'];

  /** `budgetMs`: this query's bound (never above the pool's), the pool wait included. */
  async run<R>(
    query: { name?: string; text: string; values: unknown[] },
    budgetMs = this.pool.timeoutMs,
  ): Promise<pg.QueryResult<R & pg.QueryResultRow>> {
    // The first query shares its budget with the pool wait that preceded it.
    const remaining = Math.round(budgetMs - (performance.now() - this.#budgetStart));
    if (remaining < this.pool.minBudgetMs) {
      // Not sent: the connection stays healthy and goes back to the pool.
      this.#budgetStart = performance.now();
      throw new DatabaseTimeout(`no time left for a database query (${Math.max(0, remaining)} ms of ${Math.round(budgetMs)} ms)`);
    }
    const started = performance.now();
    // Our own timer rather than pg's query_timeout: pg's read timeout is told apart only by its
    // message.
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(resolve, remaining, 'expired');
    });
    try {
      const result = await Promise.race([this.client.query<R & pg.QueryResultRow>(query), expired]);
      if (result === 'expired') {
        this.#broken = true;
        // why: pg keeps its socket private; a timed-out query leaves it unusable, so cut it now
        // instead of waiting for a TCP timeout on a black-holed server. The query then fails
        // with the connection, and nobody waits for it.
        (this.client as unknown as RawConnection).connection?.stream?.destroy();
        this.pool.onQuery?.((performance.now() - started) / 1000, false);
        throw new DatabaseTimeout(`database query exceeded ${Math.round(budgetMs)} ms`);
      }
      this.pool.onQuery?.((performance.now() - started) / 1000, true);
      return result;
    } catch (error) {
      if (error instanceof DatabaseTimeout) throw error;
      this.pool.onQuery?.((performance.now() - started) / 1000, false);
      // A code-less error on a client whose connection reported an error is that connection
      // breaking (pg errors the query in flight, then the client); not a bug of the query.
      if (this.#broken && !hasCode(error)) {
        throw new DatabaseUnavailable('the database connection broke during a query', { cause: error });
      }
      throw error;
    } finally {
      clearTimeout(timer);
      this.#budgetStart = performance.now();
    }
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.client.removeListener('error', this.#onError);
    this.client.release(this.#broken ? new Error('the connection broke or a query timed out') : undefined);
  }
}

/** How long opening one connection may take: a few query bounds, at least 2 s. */
export function openTimeoutMs(queryTimeoutMs: number): number {
  return Math.max(3 * queryTimeoutMs, 2_000);
}
