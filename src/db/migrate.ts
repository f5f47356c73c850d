// Kysely's Migrator over the statically listed migrations in migrations/.
import { Migrator, type Kysely, type MigrationResultSet } from 'kysely';
import { migrations } from '../../migrations/index.js';
import { openDatabase } from './database.js';
import type { Database } from './schema.js';

// Migrations (and waiting for another replica's migration lock) may take far longer than the
// per-query bound of the serving pool, so they get a connection of their own with this bound.
const MIGRATION_TIMEOUT_MS = 10 * 60_000;

/** Runs `fn` over a one-connection handle whose statements may run up to ten minutes. */
export async function withMigrationDatabase<T>(url: string, fn: (db: Kysely<Database>) => Promise<T>): Promise<T> {
  const handle = openDatabase({ url, timeoutMs: MIGRATION_TIMEOUT_MS, maxConnections: 1, onPoolError: () => undefined });
  try {
    return await fn(handle.db);
  } finally {
    await handle.close();
  }
}

export function createMigrator<DB>(db: Kysely<DB>): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
  });
}

function unwrap(result: MigrationResultSet): string[] {
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error');
    throw new Error(`migration ${failed?.migrationName ?? ''} failed`.replace('  ', ' '), { cause: result.error });
  }
  return (result.results ?? []).map((r) => r.migrationName);
}

/** Applies every pending migration; returns the names applied. */
export async function migrateUp<DB>(db: Kysely<DB>): Promise<string[]> {
  return unwrap(await createMigrator(db).migrateToLatest());
}

/** Reverts the last applied migration; returns its name (empty when none was applied). */
export async function migrateDown<DB>(db: Kysely<DB>): Promise<string[]> {
  return unwrap(await createMigrator(db).migrateDown());
}

export interface MigrationState {
  name: string;
  executedAt: Date | null;
}

export async function migrationStatus<DB>(db: Kysely<DB>): Promise<MigrationState[]> {
  const infos = await createMigrator(db).getMigrations();
  return infos.map((m) => ({ name: m.name, executedAt: m.executedAt ?? null }));
}

/** Names of migrations this build knows and the database has not applied. */
export async function pendingMigrations<DB>(db: Kysely<DB>): Promise<string[]> {
  return (await migrationStatus(db)).filter((m) => m.executedAt === null).map((m) => m.name);
}
