// Routes the workspace agent calls with its own token (contract §4.2).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from '../../domain/errors.js';
import { Type } from '@sinclair/typebox';
import { NoContent, Time, Uuid, withProblems } from '../schemas.js';
import { unexpiredSigningKeys } from '../../db/signing-keys-repo.js';
import { recordGoodbye, recordHeartbeat } from '../../db/agents-repo.js';
import type { EventHub } from '../../event-hub.js';
import type { FastifyRequest } from 'fastify';

function agentOf(request: FastifyRequest): { agentId: string; workspaceId: string } {
  const p = request.principal;
  if (p?.kind !== 'agent') throw new ApiError('FORBIDDEN', 'this route needs an agent token');
  return p;
}

const SigningKeys = Type.Object({
  agentId: Uuid,
  keys: Type.Array(
    Type.Object({
      kid: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
      publicKey: Type.String({ description: 'base64url (no padding) of the raw 32-byte Ed25519 public key' }),
      expiresAt: Time,
    }),
  ),
});

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
      const recorded = await recordHeartbeat(app.db, agentId, workspaceId);
      if (recorded === undefined) throw new ApiError('UNAUTHENTICATED', 'the agent no longer exists');
      if (recorded.event) {
        request.log.info({ transition: recorded.event.kind }, 'agent state changed');
        events.apply(recorded.event);
      }
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/agent/keys',
    {
      config: { access: 'agent' },
      schema: {
        tags: ['agent'],
        summary: "The agent's own id and every unexpired gate signing key (signature v2)",
        response: withProblems({ 200: SigningKeys }),
      },
    },
    async (request) => {
      const { agentId } = agentOf(request);
      const keys = await unexpiredSigningKeys(app.db);
      return {
        agentId,
        keys: keys.map((k) => ({ kid: k.kid, publicKey: k.publicKey.toString('base64url'), expiresAt: k.expiresAt.toISOString() })),
      };
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
      const event = await recordGoodbye(app.db, agentId, workspaceId);
      if (!event) throw new ApiError('UNAUTHENTICATED', 'the agent no longer exists');
      request.log.info('agent said goodbye');
      events.apply(event);
      return reply.code(204).send(null);
    },
  );
};

export default agentRoutes;
