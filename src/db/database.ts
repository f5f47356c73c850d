// The Kysely handle over one bounded pg pool; its owner closes both.
import { Kysely, PostgresDialect } from 'kysely';
import { BoundedPool } from './bounded-pool.js';
import type { Database } from './schema.js';

export interface DatabaseHandle {
  readonly db: Kysely<Database>;
  readonly pool: BoundedPool;
  readonly url: string;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  url: string;
  timeoutMs: number;
  maxConnections?: number;
  onPoolError: (error: Error) => void;
}

export function openDatabase(options: DatabaseOptions): DatabaseHandle {
  const pool = new BoundedPool({
    connectionString: options.url,
    timeoutMs: options.timeoutMs,
    max: options.maxConnections ?? 10,
    onError: options.onPoolError,
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed: Promise<void> | undefined;
  return {
    db,
    pool,
    url: options.url,
    // Kysely's destroy ends the pool it was given.
    close: () => (closed ??= db.destroy()),
  };
}
