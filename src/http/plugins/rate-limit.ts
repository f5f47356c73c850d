// AGENTGATE_RATE_LIMIT_PER_MIN (contract §7): one budget per token over the chat-server routes it is
// registered around, per minute; over it, 429 RATE_LIMITED with Retry-After. Runs after
// authentication (preHandler), so the budget is keyed on the token, not the address.
import rateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';
import type { FastifyPluginAsync } from 'fastify';
import { ApiError } from '../../domain/errors.js';

export interface ChatRateLimitOptions {
  perMinute: number;
}

const chatRateLimit: FastifyPluginAsync<ChatRateLimitOptions> = async (app, { perMinute }) => {
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
};

// fastify-plugin: the limit applies to the routes of the context that registers it.
export default fp(chatRateLimit, { name: 'agentgate-rate-limit' });
