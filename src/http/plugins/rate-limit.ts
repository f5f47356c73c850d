// AGENTGATE_RATE_LIMIT_PER_MIN (SPEC 7): one budget per token over the chat-server routes it is
// registered around, per minute; over it, 429 RATE_LIMITED with Retry-After. Runs after
// authentication (preHandler), so the budget is keyed on the token, not the address.
import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { UpgradeRateLimit } from '../../proxy/websocket.js';
import { ApiError } from '../../errors.js';

export interface ChatRateLimitOptions {
  perMinute: number;
  /** Receives the same budget as a function, for WebSocket upgrades (which bypass Fastify). */
  exposeForUpgrades?: (limit: UpgradeRateLimit) => void;
}

const chatRateLimit: FastifyPluginAsync<ChatRateLimitOptions> = async (app, { perMinute, exposeForUpgrades }) => {
  await app.register(rateLimit, {
    global: true,
    hook: 'preHandler',
    max: perMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => {
      const p = request.principal;
      return p === null ? `ip:${request.ip}` : p.kind === 'agent' ? `agent:${p.agentId}` : `token:${p.tokenId}`;
    },
    errorResponseBuilder: (_request, context) =>
      new ApiError('RATE_LIMITED', `over the limit of ${context.max} requests per minute for this token`, {
        retryAfter: Math.max(1, Math.ceil(context.ttl / 1000)),
      }),
  });
  if (exposeForUpgrades) {
    const check = app.createRateLimit();
    exposeForUpgrades(async (principal, ip) => {
      // why: the limiter reads only these members of a request (the key generator above, and
      // routeOptions.config for an optional group id); an upgrade has no Fastify request.
      const request = { principal, ip, routeOptions: { config: {} } } as unknown as FastifyRequest;
      const result = await check(request);
      return { allowed: result.isAllowed, retryAfterSeconds: result.isAllowed ? 0 : Math.max(1, result.ttlInSeconds) };
    });
  }
};

// fastify-plugin: the limit applies to the routes of the context that registers it.
export default fp(chatRateLimit, { name: 'agentgate-rate-limit' });
