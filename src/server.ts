// The `serve` command: config in, a listening service out, and an orderly shutdown: readiness
// goes 503, in-flight requests get AGENTGATE_SHUTDOWN_GRACE_MS to finish, then the app closes
// its resources (its plugins' onClose hooks, in reverse order of registration).
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { buildApp, type App } from './app.js';

export interface RunningServer {
  app: App;
  url: string;
  /** Set when this start generated the first admin token. */
  generatedAdminToken: string | undefined;
  close(): Promise<void>;
}

export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const app = await buildApp({ config, logger });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await app.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${port}`;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      app.lifecycle.startDraining();
      logger.info({ graceMs: config.shutdownGraceMs }, 'draining');
      const closed = app.close().then(() => true);
      const timedOut = new Promise<false>((resolve) => setTimeout(() => resolve(false), config.shutdownGraceMs).unref());
      if (!(await Promise.race([closed, timedOut]))) {
        logger.warn('shutdown grace elapsed; closing remaining connections');
        app.server.closeAllConnections();
        await closed;
      }
      logger.info('stopped');
    })());
  return { app, url, generatedAdminToken: app.generatedAdminToken, close };
}
