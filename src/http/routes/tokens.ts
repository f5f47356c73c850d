// Control routes for API tokens (contract §4.3, admin tokens only).
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from '../../domain/errors.js';
import { canonicalId } from '../../domain/names.js';
import { NoContent, StoredText, TokenParams, Uuid, withProblems } from '../schemas.js';
import { createApiToken, revokeApiToken } from '../../db/tokens-repo.js';
import type { EventHub } from '../../event-hub.js';

const TokenBody = Type.Object(
  {
    name: StoredText(200),
    scope: Type.Union([Type.Literal('conn'), Type.Literal('admin')]),
    ownerId: Type.Optional(Uuid),
  },
  { additionalProperties: false },
);

const CreatedToken = Type.Object({ id: Uuid, token: Type.String({ description: 'shown once' }) });

const tokenRoutes: FastifyPluginAsyncTypebox<{ events: EventHub }> = async (app, { events }) => {
  app.post(
    '/tokens',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['control'],
        summary: 'Create an API token (shown once)',
        body: TokenBody,
        response: withProblems({ 201: CreatedToken }),
      },
    },
    async (request, reply) => {
      const { name, scope } = request.body;
      const ownerId = request.body.ownerId === undefined ? undefined : (canonicalId(request.body.ownerId) ?? request.body.ownerId);
      if (scope === 'admin' && ownerId !== undefined) {
        throw new ApiError('INVALID_REQUEST', 'body.ownerId is only allowed with scope "conn"');
      }
      const { event, ...created } = await createApiToken(app.db, { name, scope, ownerId });
      events.apply(event);
      request.log.info({ tokenId: created.id, scope, ownerId }, 'token created');
      return reply.code(201).send(created);
    },
  );

  app.delete(
    '/tokens/:tokenId',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['control'],
        summary: 'Revoke an API token, on every replica',
        params: TokenParams,
        response: withProblems({ 204: NoContent }),
      },
    },
    async (request, reply) => {
      const { tokenId } = request.params;
      const event = await revokeApiToken(app.db, tokenId);
      if (!event) throw new ApiError('NOT_FOUND', 'no such token');
      events.apply(event);
      request.log.info({ tokenId }, 'token revoked');
      return reply.code(204).send(null);
    },
  );
};

export default tokenRoutes;
