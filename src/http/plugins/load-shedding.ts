// Load shedding (SPEC 6, OVERLOADED): when the event loop lags, API calls are refused at once
// with 503 and Retry-After rather than queued behind the lag; operations routes stay served.
// @fastify/under-pressure samples the event loop; one second of delay means every caller is
// already waiting that long.
import fp from 'fastify-plugin';
import underPressure from '@fastify/under-pressure';
import { ApiError } from '../../domain/errors.js';

export const MAX_EVENT_LOOP_DELAY_MS = 1_000;

export default fp(
  async (app, options: { maxEventLoopDelayMs?: number; sampleIntervalMs?: number }) => {
    await app.register(underPressure, {
      maxEventLoopDelay: options.maxEventLoopDelayMs ?? MAX_EVENT_LOOP_DELAY_MS,
      sampleInterval: options.sampleIntervalMs ?? 500,
      // Async, so that the refusal reaches the error handler through the hook's promise.
      pressureHandler: async (request, _reply, type, value) => {
        if (request.routeOptions.config.access === undefined || request.routeOptions.config.access === 'public') return;
        request.log.warn({ code: 'OVERLOADED', type, value }, 'shedding load');
        throw new ApiError('OVERLOADED', 'agentgate is overloaded; retry shortly', { retryAfter: 1 });
      },
    });
  },
  { name: 'agentgate-load-shedding', dependencies: ['agentgate-problem'] },
);
