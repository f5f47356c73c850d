// Bearer authentication after routing: each route declares its `access` in its config, so an
// unknown route is NOT_FOUND whatever the token (SPEC section 4), a missing, unknown or
// revoked token is UNAUTHENTICATED and a token of the wrong kind is FORBIDDEN.
import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import type { Access, Principal } from '../../auth/principal.js';
import type { TokenStore } from '../../auth/token-store.js';
import { authenticate } from '../../auth/authenticate.js';

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
      const principal = await authenticate(tokens, request.headers.authorization, access);
      request.principal = principal;
      if (principal.kind === 'agent') {
        request.log = request.log.child({ agentId: principal.agentId, workspaceId: principal.workspaceId });
      }
    });
  },
  { name: 'agentgate-auth', dependencies: ['agentgate-problem'] },
);
