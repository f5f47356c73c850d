// The `serve` command: config in, a listening service out, and an orderly shutdown: readiness
// goes 503, in-flight requests get AGENTGATE_SHUTDOWN_GRACE_MS to finish, then the event
// listener, the gate's signing key (withdrawn), the pool and the embedded database close.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { buildApp, type App } from './app.js';
import { migrateUp, withMigrationDatabase } from './db/migrate.js';
import { bootstrapAdminToken } from './db/tokens-repo.js';
import { TokenStore } from './auth/token-store.js';
import { Lifecycle } from './lifecycle.js';
import { Metrics } from './metrics.js';
import { Gate } from './gate/gate.js';
import { GateSigningKey } from './auth/gate-signing-key.js';
import { KeyPublisher } from './auth/key-publisher.js';
import { openDatabaseRuntime, startEvents } from './runtime.js';

export interface RunningServer {
  app: App;
  url: string;
  /** Set when this start generated the first admin token. */
  generatedAdminToken: string | undefined;
  close(): Promise<void>;
}

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const database = await openDatabaseRuntime(config, logger);
  const cleanups: Array<() => Promise<void>> = [() => database.close()];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch((err: unknown) => logger.error({ err }, 'shutdown step failed'));
  };
  try {
    const { db, pool } = database.handle;
    const applied = await withMigrationDatabase(database.handle.url, migrateUp);
    if (applied.length > 0) logger.info({ migrations: applied }, 'migrations applied');

    let generatedAdminToken: string | undefined;
    if (config.adminToken === undefined) {
      const created = await bootstrapAdminToken(db);
      if (created) {
        generatedAdminToken = created.token;
        logger.info({ tokenId: created.id }, 'generated the first admin token (printed once on stdout)');
      }
    }

    const metrics = new Metrics();
    pool.onQuery = metrics.observeQuery;
    const tokens = new TokenStore({ db, adminToken: config.adminToken });
    // Published before serving: an agent asks for the keys as soon as the gate answers.
    const signingKey = GateSigningKey.generate();
    const keys = new KeyPublisher({ db, key: signingKey, logger });
    await keys.start();
    // Withdrawn after the app has drained (its last requests to agents are signed with it).
    cleanups.push(() => keys.stop());
    const gate = new Gate({ pool, config, metrics, logger, signingKey });
    cleanups.push(() => gate.close());
    const events = startEvents(database.handle.url, tokens, gate, logger);
    cleanups.push(() => events.listener.close());
    const lifecycle = new Lifecycle();
    const app = await buildApp({ config, db, tokens, events: events.hub, lifecycle, metrics, logger, gate });
    cleanups.push(() => app.close());
    await app.listen({ host: config.host, port: config.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const url = `http://${host}:${port}`;

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        lifecycle.startDraining();
        logger.info({ graceMs: config.shutdownGraceMs }, 'draining');
        const drained = app.close().then(() => true);
        const timedOut = new Promise<false>((resolve) => setTimeout(() => resolve(false), config.shutdownGraceMs).unref());
        if (!(await Promise.race([drained, timedOut]))) {
          logger.warn('shutdown grace elapsed; closing remaining connections');
          app.server.closeAllConnections();
          await drained;
        }
        cleanups.pop(); // the app is closed
        await cleanup();
        logger.info('stopped');
      })());
    return { app, url, generatedAdminToken, close };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
