// Starts the real app, built as `serve` builds it, on a real socket over a test database, with
// its logs captured.
import { Writable } from 'node:stream';
import { buildApp, type App } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import type { TokenStore } from '../../src/auth/token-store.js';
import type { Lifecycle } from '../../src/lifecycle.js';
import type { Metrics } from '../../src/metrics.js';
import type { Gate } from '../../src/gate/gate.js';
import type { Clock } from '../../src/gate/failed-dials.js';
import type { KeyPublisher } from '../../src/auth/key-publisher.js';
import type { EventsRuntime } from '../../src/plugins/events.js';
import type { DatabaseHandle } from '../../src/db/database.js';
import type { TracingPluginOptions } from '../../src/plugins/tracing.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';

export const ENV_ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  // why: tests read arbitrary JSON bodies and assert on their fields.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

export interface CallOptions {
  token?: string | undefined;
  body?: unknown;
  rawBody?: string | Buffer;
  headers?: Record<string, string>;
}

export interface TestApp {
  url: string;
  app: App;
  config: Config;
  database: TestDatabase;
  handle: DatabaseHandle;
  tokens: TokenStore;
  gate: Gate;
  /** Publishes the gate's signing key (`app.signingKey`) as the server does. */
  keys: KeyPublisher;
  metrics: Metrics;
  events: EventsRuntime;
  lifecycle: Lifecycle;
  logs: string[];
  call(method: string, path: string, options?: CallOptions): Promise<Reply>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  /** Share a database with another app (two replicas); otherwise a fresh one is cloned. */
  database?: TestDatabase;
  /** Open the app's database on another URL (e.g. through a fault proxy). */
  databaseUrl?: string;
  maxEventLoopDelayMs?: number;
  loadSheddingGraceMs?: number;
  /** Signing key lifetime and refresh interval (tests of key expiry shorten them). */
  keyLifetimeMs?: number;
  keyRefreshMs?: number;
  /** Node's default process metrics (CPU, memory, event loop, GC), as `serve` exports them. Off by default. */
  processMetrics?: boolean;
  /** Spans to this provider (an in-memory exporter's, say) rather than none. */
  tracing?: TracingPluginOptions;
  /**
   * /readyz's reuse of an answer and its period for reading the migration state, and /metrics'
   * reuse of a gathering (0 unless given: tests read the metrics of what they just did).
   */
  readiness?: { reuseMs?: number; migrationsEveryMs?: number; metricsReuseMs?: number };
  /** The clock of the gate's failed-dial memory: a test moves it instead of sleeping out a backoff. */
  clock?: Clock;
}

/** A body as JSON when it is JSON, otherwise undefined (an agent's own answer, say). */
export function parseBody(text: string): unknown {
  try {
    return text ? (JSON.parse(text) as unknown) : undefined;
  } catch {
    return undefined;
  }
}

export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const database = options.database ?? (await createTestDatabase());
  const config = loadConfig({
    DATABASE_URL: options.databaseUrl ?? database.url,
    AGENTGATE_ADMIN_TOKEN: ENV_ADMIN_TOKEN,
    PORT: '0',
    LOG_LEVEL: 'info',
    AGENTGATE_DB_TIMEOUT_MS: '1000',
    ...options.env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger(config.logLevel, sink);
  const app = await buildApp({
    config,
    logger,
    maxEventLoopDelayMs: options.maxEventLoopDelayMs,
    loadSheddingGraceMs: options.loadSheddingGraceMs,
    processMetrics: options.processMetrics ?? false,
    signingKey: { lifetimeMs: options.keyLifetimeMs, refreshMs: options.keyRefreshMs },
    tracing: options.tracing,
    readiness: { metricsReuseMs: 0, ...options.readiness },
    clock: options.clock,
  });
  // Tests count on notifications from the start.
  if (!app.eventListener.connected) await new Promise<void>((resolve) => app.eventListener.once('connected', resolve));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;

  const call = async (method: string, path: string, opts: CallOptions = {}): Promise<Reply> => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    let body: string | Buffer | undefined;
    if (opts.rawBody !== undefined) body = opts.rawBody;
    else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(url + path, { method, headers, body });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, body: parseBody(text) };
  };

  return {
    url,
    app,
    config,
    database,
    handle: app.database,
    tokens: app.tokens,
    gate: app.gate,
    keys: app.keyPublisher,
    metrics: app.metrics,
    events: { hub: app.events, listener: app.eventListener },
    lifecycle: app.lifecycle,
    logs,
    call,
    close: async () => {
      await app.close();
      if (!options.database) await database.drop();
    },
  };
}

export interface AppBehindProxy {
  t: TestApp;
  proxy: FaultProxy;
  database: TestDatabase;
  close(): Promise<void>;
}

/** An app whose database connections (pool and LISTEN) go through a fault proxy. */
export async function startAppBehindFaultProxy(
  env: Record<string, string> = {},
  options: Pick<TestAppOptions, 'maxEventLoopDelayMs' | 'readiness'> = {},
): Promise<AppBehindProxy> {
  const database = await createTestDatabase();
  const target = new URL(database.url);
  const proxy = await startFaultProxy(target.hostname, Number(target.port || 5432));
  const t = await startTestApp({ database, databaseUrl: proxy.urlFor(database.url), env, ...options });
  return {
    t,
    proxy,
    database,
    close: async () => {
      await t.close();
      await proxy.close();
      await database.drop();
    },
  };
}
