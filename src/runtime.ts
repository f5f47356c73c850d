// Opens the database the service runs on: DATABASE_URL, or an embedded PostgreSQL and its
// `agentgate` database. Its owner (the database plugin, or a CLI command) closes both.
import pg from 'pg';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { Config } from './config.js';
import { openDatabase, type DatabaseHandle } from './db/database.js';
import { startEmbeddedDatabase, type EmbeddedDatabase } from './db/embedded.js';

export interface DatabaseRuntime {
  handle: DatabaseHandle;
  embedded: EmbeddedDatabase | undefined;
  close(): Promise<void>;
}

const EMBEDDED_DB_NAME = 'agentgate';

/** Connects to DATABASE_URL, or starts the embedded PostgreSQL and uses its `agentgate` database. */
export async function openDatabaseRuntime(
  config: Config,
  logger: Logger,
  options: { attachIfRunning?: boolean } = {},
): Promise<DatabaseRuntime> {
  let embedded: EmbeddedDatabase | undefined;
  let url = config.databaseUrl;
  if (url === undefined) {
    const started = performance.now();
    embedded = await startEmbeddedDatabase({
      dataDir: config.dataDir,
      attachIfRunning: options.attachIfRunning ?? false,
      onLog: (line) => logger.debug({ postgres: line }, 'embedded postgres'),
    });
    try {
      url = await ensureDatabase(embedded.url, EMBEDDED_DB_NAME);
    } catch (error) {
      await embedded.stop();
      throw error;
    }
    // As root the data may live elsewhere than configured (where the postgres user can reach it).
    logger.info(
      { dataDir: embedded.dataDir, installDir: embedded.installDir, ms: Math.round(performance.now() - started) },
      'embedded PostgreSQL started',
    );
  }
  const handle = openDatabase({
    url,
    timeoutMs: config.dbTimeoutMs,
    onPoolError: (error) => logger.warn({ err: error.message }, 'idle database connection failed'),
  });
  return {
    handle,
    embedded,
    close: async () => {
      try {
        await handle.close();
      } finally {
        await embedded?.stop();
      }
    },
  };
}

async function ensureDatabase(serverUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (!rowCount) await client.query(`create database ${pg.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
