// Operations routes (contract §4.4), without authentication: liveness, readiness, metrics, OpenAPI.
// Anyone who reaches the port can call them as fast as they like, so none may cost the gate its
// database capacity or much CPU: readiness checks share one probe (a ping, reused for a second;
// the migrations read at start, then every five minutes), scrapes share one gathering (reused for
// 100 ms), and the OpenAPI document is serialised once.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { sql } from 'kysely';
import { ApiError } from '../../domain/errors.js';
import { pendingMigrations } from '../../db/migrate.js';
import type { Lifecycle } from '../../lifecycle.js';
import type { Metrics } from '../../metrics.js';
import { SharedProbe } from '../shared-probe.js';

export interface OpsOptions {
  lifecycle: Lifecycle;
  metrics: Metrics;
  /** How long a readiness answer is reused (default 1 s). */
  readyReuseMs?: number | undefined;
  /** How often the migration state is read again (default 5 minutes; it was read at start). */
  migrationsEveryMs?: number | undefined;
  /** How long a gathering of the metrics is reused (default 100 ms). */
  metricsReuseMs?: number | undefined;
}

const READY_REUSE_MS = 1_000;
const MIGRATIONS_EVERY_MS = 300_000;
/**
 * A gathering costs about a millisecond: reused for 100 ms, a flood of scrapes costs at most 1 %
 * of a core, and a monitor (or a benchmark reading its figures) still sees fresh values.
 */
const METRICS_REUSE_MS = 100;

type Readiness = { ready: true } | { ready: false; detail: string };

const opsRoutes: FastifyPluginAsyncTypebox<OpsOptions> = async (app, options) => {
  const { lifecycle, metrics } = options;
  const migrationsEveryMs = options.migrationsEveryMs ?? MIGRATIONS_EVERY_MS;
  // Migrations were applied (or found applied) at start; they change only with a deployment.
  let migrationsReadAt = performance.now();
  let pending: string[] = [];
  const readiness = new SharedProbe<Readiness>(async () => {
    try {
      if (performance.now() - migrationsReadAt >= migrationsEveryMs) {
        pending = await pendingMigrations(app.db);
        migrationsReadAt = performance.now();
      } else {
        await sql`select 1`.execute(app.db);
      }
    } catch {
      return { ready: false, detail: 'the database is unreachable' };
    }
    return pending.length > 0 ? { ready: false, detail: `migrations pending: ${pending.join(', ')}` } : { ready: true };
  }, options.readyReuseMs ?? READY_REUSE_MS);
  const scrape = new SharedProbe(() => metrics.registry.metrics(), options.metricsReuseMs ?? METRICS_REUSE_MS);
  let openapi: string | undefined;

  app.get(
    '/healthz',
    { schema: { tags: ['operations'], summary: 'Liveness', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } },
    () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Readiness: database reachable, migrations current, not draining',
        response: { 200: Type.Object({ status: Type.Literal('ready') }), 503: Type.Ref('Problem') },
      },
    },
    async () => {
      if (lifecycle.draining) throw new ApiError('NOT_READY', 'the process is draining');
      const answer = await readiness.get();
      if (!answer.ready) throw new ApiError('NOT_READY', answer.detail);
      return { status: 'ready' as const };
    },
  );

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const text = await scrape.get();
    return reply.type(metrics.registry.contentType).send(text);
  });

  app.get('/openapi.json', { schema: { hide: true } }, (_request, reply) => {
    openapi ??= JSON.stringify(app.swagger());
    return reply.type('application/json; charset=utf-8').send(openapi);
  });
};

export default opsRoutes;
