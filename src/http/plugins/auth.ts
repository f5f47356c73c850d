// Bearer authentication after routing: each route declares its `access` in its config, so an
// unknown route is NOT_FOUND whatever the token (SPEC section 4), a missing, unknown or
// revoked token is UNAUTHENTICATED and a token of the wrong kind is FORBIDDEN.
import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../../errors.js';
import { admits, type Access, type Principal } from '../../auth/principal.js';
import { bearerToken } from '../../auth/tokens.js';
import type { TokenStore } from '../../auth/token-store.js';
import { isDatabaseUnavailable } from '../../db/failures.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export interface AuthOptions {
  tokens: TokenStore;
}

export default fp<AuthOptions>(
  (app, { tokens }) => {
    app.decorateRequest('principal', null);
    app.addHook('onRequest', async (request: FastifyRequest) => {
      const access = request.routeOptions.config.access;
      if (access === undefined || access === 'public') return;
      const token = bearerToken(request.headers.authorization);
      if (!token) throw new ApiError('UNAUTHENTICATED', 'a bearer token is required');
      let principal: Principal | null;
      try {
        principal = await tokens.resolve(token);
      } catch (error) {
        if (!isDatabaseUnavailable(error)) throw error;
        throw new ApiError('DATABASE_UNAVAILABLE', 'the token could not be checked: the database is unavailable', {
          retryAfter: 1,
        });
      }
      if (!principal) throw new ApiError('UNAUTHENTICATED', 'the token is unknown or revoked');
      if (!admits(access, principal)) {
        throw new ApiError('FORBIDDEN', `this route needs ${access === 'agent' ? 'an agent' : `a ${access}`} token`);
      }
      request.principal = principal;
      if (principal.kind === 'agent') {
        request.log = request.log.child({ agentId: principal.agentId, workspaceId: principal.workspaceId });
      }
    });
  },
  { name: 'agentgate-auth', dependencies: ['agentgate-problem'] },
);
