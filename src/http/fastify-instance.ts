// The Fastify instance and its server's own options: how requests are identified, bounded and
// routed before any plugin sees them.
import { randomUUID } from 'node:crypto';
import Fastify, { LogController } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { trustProxyFrom } from '../proxy/trust-proxy.js';
import { answerClientError, answerFrameworkError } from './plugins/problem.js';
import { canonicalTarget } from './request-target.js';

// Incoming request ids are kept only when they are short and plain, so logs stay parseable.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function fastifyInstance(config: Config, logger: Logger) {
  const trust = trustProxyFrom(config.trustProxy);
  return Fastify({
    loggerInstance: logger,
    bodyLimit: config.bodyLimitBytes,
    // One canonical target for routing, authorization, the proxy and logs alike.
    rewriteUrl: (req) => canonicalTarget(req.url ?? '/'),
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Draining answers with our own problem+json (plugins/admission.ts) rather than Fastify's plain 503.
    return503OnClosing: false,
    // One line per request instead (plugins/request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    // Behind a configured reverse proxy, request.ip (logs, rate limits) is the client it names.
    trustProxy: config.trustProxy.length > 0 ? (address: string) => trust(address) : false,
    // A whole request (headers and body) must arrive within AGENTGATE_REQUEST_TIMEOUT_MS, or its
    // socket is closed: a body that trickles in cannot hold a socket for ever. Node checks on
    // an interval, so the interval follows the bound.
    requestTimeout: config.requestTimeoutMs,
    http: {
      // Node would answer a missing Host with a bare 400 before the app sees the request; the
      // admission hook refuses it as problem+json instead.
      requireHostHeader: false,
      headersTimeout: Math.min(60_000, config.requestTimeoutMs),
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(config.requestTimeoutMs / 4))),
    },
    forceCloseConnections: 'idle',
    // No type coercion: a body's `"name": 5` or `"transition": ["start"]` is the wrong JSON type
    // and INVALID_REQUEST, not silently turned into "5" or "start". Parameters and queries are
    // all strings in our schemas, so they need no coercion either.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Errors met before a route runs answer problem+json too (contract §6).
    frameworkErrors: answerFrameworkError,
    clientErrorHandler(error, socket) {
      answerClientError(logger, error, socket);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
}
