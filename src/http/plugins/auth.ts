// Bearer authentication after routing: each route declares its `access` in its config, so an
// unknown route is NOT_FOUND whatever the token (contract §4), a missing, unknown or
// revoked token is UNAUTHENTICATED and a token of the wrong kind is FORBIDDEN.
import fp from 'fastify-plugin';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Access, Principal } from '../../auth/principal.js';
import type { TokenStore } from '../../auth/token-store.js';
import { authenticate } from '../../auth/authenticate.js';
import type { TokenConcurrency } from '../../auth/token-concurrency.js';
import { noteOutcome } from './request-log.js';

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
  /** Caps the requests one token has in flight; the slot is held until the response ends. */
  concurrency: TokenConcurrency;
}

/** Answers `Expect: 100-continue` (the server leaves that to us): the caller may send its body. */
function continueIfExpected(request: FastifyRequest, reply: FastifyReply): void {
  const expect = request.headers.expect;
  if (typeof expect === 'string' && expect.toLowerCase() === '100-continue' && !reply.raw.headersSent) reply.raw.writeContinue();
}

export default fp<AuthOptions>(
  (app, { tokens, concurrency }) => {
    app.decorateRequest('principal', null);
    app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      const access = request.routeOptions.config.access;
      // No access: no such route, whose NOT_FOUND needs no body.
      if (access === undefined) return;
      if (access === 'public') {
        continueIfExpected(request, reply);
        return;
      }
      const principal = await authenticate(tokens, request.headers.authorization, access);
      request.principal = principal;
      // A WebSocket upgrade holds a WebSocket slot until its socket closes, refused or not (the
      // response on an upgrade socket closes with it).
      // `upgrade` is set by Node's parser on a request that came through the server's upgrade
      // event (not in Node's types); the header alone would let a plain request take a
      // WebSocket slot instead of a request slot.
      const upgrade =
        (request.raw as { upgrade?: boolean }).upgrade === true && String(request.headers.upgrade ?? '').toLowerCase() === 'websocket';
      const release = concurrency.acquire(upgrade ? 'websocket' : 'request', principal);
      // A response's 'close' follows its 'finish', and comes alone when the connection dies
      // first; release frees the slot once, whichever comes.
      reply.raw.once('finish', release);
      reply.raw.once('close', release);
      // The caller may have left while its token was looked up: that 'close' has been.
      if (reply.raw.destroyed) release();
      continueIfExpected(request, reply);
      if (principal.kind === 'agent') {
        noteOutcome(request, { agentId: principal.agentId, workspaceId: principal.workspaceId });
      }
    });
  },
  { name: 'agentgate-auth', dependencies: ['agentgate-problem'] },
);
