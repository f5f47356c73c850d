// Routes the workspace agent calls with its own token (SPEC 4.2).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from '../../errors.js';
import { NoContent, withProblems } from '../schemas.js';
import { recordGoodbye, recordHeartbeat } from '../../db/agents-repo.js';
import type { EventHub } from '../../event-hub.js';
import type { FastifyRequest } from 'fastify';

function agentOf(request: FastifyRequest): { agentId: string; workspaceId: string } {
  const p = request.principal;
  if (p?.kind !== 'agent') throw new ApiError('FORBIDDEN', 'this route needs an agent token');
  return p;
}

const agentRoutes: FastifyPluginAsyncTypebox<{ events: EventHub }> = async (app, { events }) => {
  app.post(
    '/agent/heartbeat',
    {
      config: { access: 'agent' },
      schema: {
        tags: ['agent'],
        summary: 'Report that the agent is alive (sets last_connected_at to the database clock)',
        response: withProblems({ 204: NoContent }),
      },
    },
    async (request, reply) => {
      const { agentId, workspaceId } = agentOf(request);
      const transition = await recordHeartbeat(app.db, agentId, workspaceId);
      if (transition === undefined) throw new ApiError('UNAUTHENTICATED', 'the agent no longer exists');
      if (transition) {
        request.log.info({ transition }, 'agent state changed');
        events.apply({ kind: transition, workspaceId, agentId });
      }
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/agent/disconnect',
    {
      config: { access: 'agent' },
      schema: {
        tags: ['agent'],
        summary: 'Say goodbye (graceful shutdown): the agent counts as disconnected at once',
        response: withProblems({ 204: NoContent }),
      },
    },
    async (request, reply) => {
      const { agentId, workspaceId } = agentOf(request);
      if (!(await recordGoodbye(app.db, agentId, workspaceId))) {
        throw new ApiError('UNAUTHENTICATED', 'the agent no longer exists');
      }
      request.log.info('agent said goodbye');
      events.apply({ kind: 'agent_disconnected', workspaceId, agentId });
      return reply.code(204).send(null);
    },
  );
};

export default agentRoutes;
