// Operations routes (SPEC 4.4), without authentication: liveness, readiness, metrics, OpenAPI.
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { sql } from 'kysely';
import { ApiError } from '../../domain/errors.js';
import { pendingMigrations } from '../../db/migrate.js';
import type { Lifecycle } from '../../lifecycle.js';
import type { Metrics } from '../../metrics.js';

export interface OpsOptions {
  lifecycle: Lifecycle;
  metrics: Metrics;
}

const opsRoutes: FastifyPluginAsyncTypebox<OpsOptions> = async (app, { lifecycle, metrics }) => {
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
      let pending: string[];
      try {
        await sql`select 1`.execute(app.db);
        pending = await pendingMigrations(app.db);
      } catch {
        throw new ApiError('NOT_READY', 'the database is unreachable');
      }
      if (pending.length > 0) throw new ApiError('NOT_READY', `migrations pending: ${pending.join(', ')}`);
      return { status: 'ready' as const };
    },
  );

  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });

  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
};

export default opsRoutes;
