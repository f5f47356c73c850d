// Tracing (OpenTelemetry), decorated as `app.tracing`. On when an OTLP endpoint is configured
// (the SDK is then imported, started, and flushed and stopped on close) or when a provider is
// handed in (tests: an in-memory exporter; its owner stops it). Otherwise TRACING_OFF, and not
// one module of the SDK is loaded.
import fp from 'fastify-plugin';
import type { TracerProvider } from '@opentelemetry/api';
import type { Config } from '../config.js';
import { TRACING_OFF, type Tracing } from '../tracing/tracing.js';

declare module 'fastify' {
  interface FastifyInstance {
    tracing: Tracing;
  }
}

export interface TracingPluginOptions {
  /** Spans go to this provider, whatever the configuration says. */
  provider?: TracerProvider | undefined;
}

// Spans still queued get this long to reach the collector on close; one that does not answer
// must not hold the shutdown (it comes last, after the server has drained).
const FLUSH_BOUND_MS = 3_000;

export default fp<TracingPluginOptions & { config: Config }>(
  async (app, { config, provider }) => {
    const { endpoint } = config.tracing;
    if (provider) {
      const { tracingFor } = await import('../tracing/sdk.js');
      app.decorate('tracing', tracingFor(provider));
    } else if (endpoint !== undefined) {
      const { startTracingSdk } = await import('../tracing/sdk.js');
      const sdk = startTracingSdk({ ...config.tracing, endpoint });
      app.addHook('onClose', () => sdk.shutdown(FLUSH_BOUND_MS));
      app.decorate('tracing', sdk.tracing);
      app.log.info({ endpoint: new URL(endpoint).origin }, 'tracing: spans are exported over OTLP/HTTP');
    } else {
      app.decorate('tracing', TRACING_OFF);
    }
  },
  { name: 'agentgate-tracing' },
);
