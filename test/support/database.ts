// A database per test file, cloned from the run's migrated template, dropped afterwards.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../src/db/database.js';
import { withDatabase } from './global-setup.js';

export interface TestDatabase {
  name: string;
  url: string;
  /** The server's URL on its maintenance database, for admin statements. */
  serverUrl: string;
  open(options?: { timeoutMs?: number; url?: string }): DatabaseHandle;
  drop(): Promise<void>;
}

async function admin<T>(serverUrl: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = inject('serverUrl');
  const name = `agentgate_t_${inject('runId')}_${randomBytes(4).toString('hex')}`;
  await admin(serverUrl, (c) => c.query(`create database ${name} template ${inject('templateDb')}`));
  const url = withDatabase(serverUrl, name);
  const handles: DatabaseHandle[] = [];
  return {
    name,
    url,
    serverUrl,
    open: (options = {}) => {
      const handle = openDatabase({
        url: options.url ?? url,
        timeoutMs: options.timeoutMs ?? 2_000,
        onPoolError: () => undefined,
      });
      handles.push(handle);
      return handle;
    },
    drop: async () => {
      await Promise.all(handles.map((h) => h.close()));
      await admin(serverUrl, (c) => c.query(`drop database if exists ${name} with (force)`));
    },
  };
}
