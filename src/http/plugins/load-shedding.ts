// Load shedding (contract §6, OVERLOADED): when the event loop lags, API calls are refused at once
// with 503 and Retry-After rather than queued behind the lag. Operations routes stay served, and
// so do the agents' own routes: a heartbeat refused while another tenant's traffic stalls the
// loop would, held past the inactive timeout, classify every healthy agent of the replica as
// disconnected. @fastify/under-pressure samples the event loop; one second of delay means every
// caller is already waiting that long. The delay it sheds on is exported as a gauge
// (agentgate_event_loop_delay_seconds), so what operators see is what the gate decides on.
import fp from 'fastify-plugin';
import underPressure from '@fastify/under-pressure';
import { ApiError } from '../../domain/errors.js';

export const MAX_EVENT_LOOP_DELAY_MS = 1_000;
const SAMPLE_INTERVAL_MS = 500;

export interface LoadSheddingOptions {
  maxEventLoopDelayMs?: number | undefined;
  sampleIntervalMs?: number | undefined;
  /**
   * How long after the app is ready nothing is shed (default: two and a half sample
   * intervals). Start-up work (loading modules, compiling schemas) blocks the loop before
   * anyone is served, and the sampler reads it as lag (an interval with no sample at all reads
   * as an infinite one): the first interval that ends after start-up still holds it, the second
   * is the first clean one, and the half is for the sampler's timer running late.
   */
  startupGraceMs?: number | undefined;
}

export default fp(
  async (app, options: LoadSheddingOptions) => {
    const sampleInterval = options.sampleIntervalMs ?? SAMPLE_INTERVAL_MS;
    const grace = options.startupGraceMs ?? 2.5 * sampleInterval;
    let readyAt = Number.POSITIVE_INFINITY;
    app.addHook('onReady', (done) => {
      readyAt = performance.now();
      done();
    });
    await app.register(underPressure, {
      maxEventLoopDelay: options.maxEventLoopDelayMs ?? MAX_EVENT_LOOP_DELAY_MS,
      sampleInterval,
      // Async, so that the refusal reaches the error handler through the hook's promise.
      pressureHandler: async (request, _reply, type, value) => {
        const access = request.routeOptions.config.access;
        if (access === undefined || access === 'public' || access === 'agent') return;
        // `readyAt` is infinite before ready, so this holds then too.
        if (!(performance.now() - readyAt >= grace)) return;
        request.log.warn({ code: 'OVERLOADED', type, value }, 'shedding load');
        throw new ApiError('OVERLOADED', 'agentgate is overloaded; retry shortly', { retryAfter: 1 });
      },
    });
    app.metrics.readEventLoopDelay = () => app.memoryUsage().eventLoopDelay / 1000;
  },
  { name: 'agentgate-load-shedding', dependencies: ['agentgate-problem', 'agentgate-metrics'] },
);
