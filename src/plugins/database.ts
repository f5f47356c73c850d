// The database: DATABASE_URL or an embedded PostgreSQL, migrated, with the first admin token
// made when none is configured. Decorated as `app.database`; closed last, after everything that
// queries it.
import fp from 'fastify-plugin';
import type { Kysely } from 'kysely';
import type { Config } from '../config.js';
import type { DatabaseHandle } from '../db/database.js';
import type { Database } from '../db/schema.js';
import { migrateUp, withMigrationDatabase } from '../db/migrate.js';
import { bootstrapAdminToken } from '../db/tokens-repo.js';
import { openDatabaseRuntime } from '../runtime.js';

declare module 'fastify' {
  interface FastifyInstance {
    database: DatabaseHandle;
    db: Kysely<Database>;
    /** Set when this start generated the first admin token (printed once by `serve`). */
    generatedAdminToken: string | undefined;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const runtime = await openDatabaseRuntime(config, app.log);
    const { handle } = runtime;
    handle.pool.onQuery = app.metrics.observeQuery;
    let generatedAdminToken: string | undefined;
    try {
      const applied = await withMigrationDatabase(handle.url, migrateUp);
      if (applied.length > 0) app.log.info({ migrations: applied }, 'migrations applied');
      if (config.adminToken === undefined) {
        const created = await bootstrapAdminToken(handle.db);
        if (created) {
          generatedAdminToken = created.token;
          app.log.info({ tokenId: created.id }, 'generated the first admin token (printed once on stdout)');
        }
      }
    } catch (error) {
      await runtime.close();
      throw error;
    }
    app.addHook('onClose', () => runtime.close());
    app.decorate('database', handle);
    app.decorate('db', handle.db);
    app.decorate('generatedAdminToken', generatedAdminToken);
  },
  { name: 'agentgate-database', dependencies: ['agentgate-metrics'] },
);
