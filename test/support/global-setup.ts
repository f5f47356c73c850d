// One PostgreSQL server per test run: TEST_DATABASE_URL / DATABASE_URL when set, otherwise an
// embedded one. One migrated template database per run; each test file clones its own.
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { Kysely, PostgresDialect } from 'kysely';
import { startEmbeddedDatabase, type EmbeddedDatabase } from '../../src/db/embedded.js';
import { migrateUp } from '../../src/db/migrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    serverUrl: string;
    templateDb: string;
    runId: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // Tests that run the `agentgate` command use the compiled output; compile it once, up front.
  execFileSync(process.execPath, ['scripts/build-if-stale.mjs'], { stdio: 'inherit' });
  let embedded: EmbeddedDatabase | undefined;
  let tmp: string | undefined;
  let serverUrl = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
  if (serverUrl) {
    process.stderr.write(`tests: using the PostgreSQL server of TEST_DATABASE_URL/DATABASE_URL\n`);
  } else {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'agentgate-test-'));
    embedded = await startEmbeddedDatabase({ dataDir: tmp, ephemeral: true });
    serverUrl = embedded.url;
    process.stderr.write(`tests: started an embedded PostgreSQL on port ${embedded.port}\n`);
  }
  const admin = new pg.Client({ connectionString: serverUrl });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`tests need a PostgreSQL server and could not reach it: ${(error as Error).message}`);
  }
  const runId = `${process.pid}_${Date.now().toString(36)}`;
  const templateDb = `agentgate_tpl_${runId}`;
  await admin.query(`create database ${templateDb}`);
  const templateUrl = withDatabase(serverUrl, templateDb);
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: templateUrl, max: 1 }) }) });
  await migrateUp(db);
  await db.destroy();

  project.provide('serverUrl', serverUrl);
  project.provide('templateDb', templateDb);
  project.provide('runId', runId);

  return async () => {
    // Sweep this run's databases, including those of test files that crashed before dropping theirs.
    const { rows } = await admin.query<{ datname: string }>(
      `select datname from pg_database where datname like $1 or datname = $2`,
      [`agentgate_t_${runId}_%`, templateDb],
    );
    for (const { datname } of rows) await admin.query(`drop database if exists ${datname} with (force)`);
    await admin.end();
    await embedded?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  };
}

export function withDatabase(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}
