// The OpenTelemetry SDK, started only when an OTLP endpoint is configured: this module is
// imported dynamically (plugins/tracing.ts), so a gate without tracing never loads it. Spans go
// in batches to the OTLP/HTTP endpoint; the provider is the gate's own, not registered globally.
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import type { TracerProvider } from '@opentelemetry/api';
import type { TracingConfig } from '../config.js';
import { TRACER_NAME, tracingWith, type Tracing } from './tracing.js';

export interface TracingSdk {
  tracing: Tracing;
  /** Exports what is still queued, then stops; never longer than `boundMs`. */
  shutdown(boundMs: number): Promise<void>;
}

/** Tracing over a provider made elsewhere (tests hand in one with an in-memory exporter). */
export function tracingFor(provider: TracerProvider): Tracing {
  return tracingWith(provider, new W3CTraceContextPropagator());
}

export function startTracingSdk(config: TracingConfig & { endpoint: string }): TracingSdk {
  // service.name: `agentgate`, unless OTEL_RESOURCE_ATTRIBUTES names one, unless OTEL_SERVICE_NAME
  // does (the SDK's own order of precedence).
  let resource = defaultResource()
    .merge(resourceFromAttributes({ 'service.name': TRACER_NAME }))
    .merge(detectResources({ detectors: [envDetector] }));
  if (config.serviceName !== undefined) resource = resource.merge(resourceFromAttributes({ 'service.name': config.serviceName }));
  // The URL as configured; the exporter's other settings (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
  // _COMPRESSION) it reads from the environment itself, as the SDK documents them.
  const exporter = new OTLPTraceExporter({ url: config.endpoint });
  const provider = new NodeTracerProvider({ resource, spanProcessors: [new BatchSpanProcessor(exporter)] });
  return {
    tracing: tracingFor(provider),
    async shutdown(boundMs) {
      let timer: NodeJS.Timeout | undefined;
      // A collector that does not answer must not hold the process's exit.
      const bound = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, boundMs);
      });
      try {
        await Promise.race([provider.shutdown().catch(() => undefined), bound]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
