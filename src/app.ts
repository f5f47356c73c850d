// buildApp: the whole service as one Fastify instance, as a list of plugin registrations. The
// resource plugins (plugins/) open what the app runs on and close it in reverse order; the
// request pipeline (http/plugins/) admits requests; the routes (http/routes/) answer them. The
// process entry (server.ts) and the tests both build it this way; nothing here listens.
import type { Logger } from 'pino';
import type { Config } from './config.js';
import type { Clock } from './gate/failed-dials.js';
import { Problem } from './http/schemas.js';
import { fastifyInstance } from './http/fastify-instance.js';
import rawServer from './http/plugins/raw-server.js';
import problemPlugin from './http/plugins/problem.js';
import requestLog from './http/plugins/request-log.js';
import serverSpan from './http/plugins/server-span.js';
import loadShedding from './http/plugins/load-shedding.js';
import openapiPlugin from './http/plugins/openapi.js';
import admission from './http/plugins/admission.js';
import authPlugin from './http/plugins/auth.js';
import opsRoutes from './http/routes/ops.js';
import workspaceRoutes from './http/routes/workspaces.js';
import tokenRoutes from './http/routes/tokens.js';
import agentRoutes from './http/routes/agent.js';
import chatRoutes from './http/routes/chat.js';
import tracingPlugin, { type TracingPluginOptions } from './plugins/tracing.js';
import metricsPlugin from './plugins/metrics.js';
import databasePlugin from './plugins/database.js';
import signingKeyPlugin, { type SigningKeyPluginOptions } from './plugins/signing-key.js';
import tokensPlugin from './plugins/tokens.js';
import gatePlugin from './plugins/gate.js';
import eventsPlugin from './plugins/events.js';
import inFlightPlugin from './plugins/in-flight.js';
import lifecyclePlugin from './plugins/lifecycle.js';
import proxyPlugin from './plugins/proxy.js';
import mcpPlugin from './plugins/mcp.js';

/** What `serve` and the tests build the app from: the configuration and a few knobs. */
export interface AppOptions {
  config: Config;
  logger: Logger;
  /** Event loop delay past which API calls are shed (tests lower it, or turn it off with 0). */
  maxEventLoopDelayMs?: number | undefined;
  /** How long after start-up nothing is shed (tests lengthen it). */
  loadSheddingGraceMs?: number | undefined;
  /** Node's default process metrics (tests, running several apps in one process, turn them off). */
  processMetrics?: boolean | undefined;
  signingKey?: SigningKeyPluginOptions | undefined;
  /** Tracing through a provider of the caller's (tests), instead of what the configuration says. */
  tracing?: TracingPluginOptions | undefined;
  /**
   * How long /readyz reuses an answer and /metrics a gathering, and how often /readyz reads the
   * migration state (tests shorten them, to read what they just changed).
   */
  readiness?: { reuseMs?: number | undefined; migrationsEveryMs?: number | undefined; metricsReuseMs?: number | undefined } | undefined;
  /** The clock of the gate's failed-dial memory (tests move one by hand instead of sleeping). */
  clock?: Clock | undefined;
}

export async function buildApp(options: AppOptions) {
  const { config, logger } = options;
  const app = fastifyInstance(config, logger);
  // A start-up that fails half-way closes what the plugins registered so far opened.
  try {
    await app.register(rawServer);

    // Resources first, each closing itself; onClose runs in reverse, so the database goes last
    // but for tracing, whose spans of the shutdown itself are flushed after everything else.
    await app.register(tracingPlugin, { ...options.tracing, config });
    await app.register(metricsPlugin, { processMetrics: options.processMetrics });
    await app.register(databasePlugin, { config });
    await app.register(signingKeyPlugin, options.signingKey ?? {});
    await app.register(tokensPlugin, { config });
    await app.register(gatePlugin, { config, clock: options.clock });
    await app.register(eventsPlugin);
    await app.register(inFlightPlugin, { config });
    await app.register(lifecyclePlugin);
    await app.register(proxyPlugin, { config });
    await app.register(mcpPlugin, { config });

    // The request pipeline, in the order its hooks run.
    app.addSchema(Problem);
    await app.register(problemPlugin);
    await app.register(requestLog, { metrics: app.metrics });
    // Before every other onRequest hook, so that the server span covers admission too.
    await app.register(serverSpan, { tracing: app.tracing });
    await app.register(loadShedding, { maxEventLoopDelayMs: options.maxEventLoopDelayMs, startupGraceMs: options.loadSheddingGraceMs });
    await app.register(openapiPlugin);
    // Before authentication: a draining process answers SHUTTING_DOWN without a token lookup.
    await app.register(admission, { lifecycle: app.lifecycle });
    await app.register(authPlugin, { tokens: app.tokens, concurrency: app.concurrency });

    // The routes.
    const { readiness } = options;
    await app.register(opsRoutes, {
      lifecycle: app.lifecycle,
      metrics: app.metrics,
      readyReuseMs: readiness?.reuseMs,
      migrationsEveryMs: readiness?.migrationsEveryMs,
      metricsReuseMs: readiness?.metricsReuseMs,
    });
    await app.register(workspaceRoutes, { config, events: app.events });
    await app.register(tokenRoutes, { events: app.events });
    await app.register(agentRoutes, { events: app.events });
    await app.register(chatRoutes, { config });
    return app;
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
}

export type App = Awaited<ReturnType<typeof buildApp>>;
