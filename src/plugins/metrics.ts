// The process's metrics registry (contract §8), decorated as `app.metrics`.
import fp from 'fastify-plugin';
import { Metrics } from '../metrics.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

export interface MetricsPluginOptions {
  /** Node's default process metrics; off where several apps share a process (tests). */
  processMetrics?: boolean | undefined;
}

export default fp<MetricsPluginOptions>(
  async (app, options) => {
    app.decorate('metrics', new Metrics({ processMetrics: options.processMetrics ?? true }));
  },
  { name: 'agentgate-metrics' },
);
