// buildApp: the whole service as one Fastify instance. Its plugins open the resources it runs on
// (database, signing key, token store, gate, event listener) and close them in reverse order.
// The process entry (server.ts) and the tests both build it this way; nothing here listens.
import { randomUUID } from 'node:crypto';
import Fastify, { LogController } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { TokenConcurrency } from './auth/token-concurrency.js';
import { ApiError } from './domain/errors.js';
import { Problem } from './http/schemas.js';
import problemPlugin, { answerClientError, answerFrameworkError, rawProblem, writeProblem } from './http/plugins/problem.js';
import authPlugin from './http/plugins/auth.js';
import requestLog from './http/plugins/request-log.js';
import openapiPlugin from './http/plugins/openapi.js';
import loadShedding from './http/plugins/load-shedding.js';
import opsRoutes from './http/routes/ops.js';
import workspaceRoutes from './http/routes/workspaces.js';
import tokenRoutes from './http/routes/tokens.js';
import agentRoutes from './http/routes/agent.js';
import connRoutes from './http/routes/conn.js';
import proxyRoutes from './http/routes/proxy.js';
import mcpRoutes from './http/routes/mcp.js';
import { FrontDoor } from './mcp/front-door.js';
import { RunningCalls } from './mcp/calls.js';
import { ToolLists } from './mcp/tool-lists.js';
import { sharedSchemaValidator } from './http/mcp-http.js';
import { publishCancels } from './db/events.js';
import { cancelRelay } from './mcp/cancel-relay.js';
import { WebSockets, isWebSocketUpgrade } from './proxy/websocket.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import chatRateLimit from './http/plugins/rate-limit.js';
import { trustProxyFrom } from './proxy/trust-proxy.js';
import { canonicalTarget } from './http/request-target.js';
import metricsPlugin from './plugins/metrics.js';
import databasePlugin from './plugins/database.js';
import signingKeyPlugin, { type SigningKeyPluginOptions } from './plugins/signing-key.js';
import tokensPlugin from './plugins/tokens.js';
import gatePlugin from './plugins/gate.js';
import eventsPlugin from './plugins/events.js';
import inFlightPlugin from './plugins/in-flight.js';
import lifecyclePlugin from './plugins/lifecycle.js';
import tracingPlugin, { type TracingPluginOptions } from './plugins/tracing.js';
import serverSpan from './http/plugins/server-span.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Per-token slots in use (read by diagnostics and tests). */
    concurrency: TokenConcurrency;
  }
}

/** What `serve` and the tests build the app from: the configuration and a few knobs. */
export interface AppOptions {
  config: Config;
  logger: Logger;
  /** Event loop delay past which API calls are shed (tests lower it, or turn it off with 0). */
  maxEventLoopDelayMs?: number | undefined;
  /** How long after start-up nothing is shed (tests lengthen it). */
  loadSheddingGraceMs?: number | undefined;
  /** Node's default process metrics (tests, running several apps in one process, turn them off). */
  processMetrics?: boolean | undefined;
  signingKey?: SigningKeyPluginOptions | undefined;
  /** Tracing through a provider of the caller's (tests), instead of what the configuration says. */
  tracing?: TracingPluginOptions | undefined;
  /**
   * How long /readyz reuses an answer and /metrics a gathering, and how often /readyz reads the
   * migration state (tests shorten them, to read what they just changed).
   */
  readiness?: { reuseMs?: number | undefined; migrationsEveryMs?: number | undefined; metricsReuseMs?: number | undefined } | undefined;
}

// Incoming request ids are kept only when they are short and plain, so logs stay parseable.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function buildApp(options: AppOptions) {
  const { config, logger } = options;
  const trust = trustProxyFrom(config.trustProxy);
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: config.bodyLimitBytes,
    // One canonical target for routing, authorization, the proxy and logs alike.
    rewriteUrl: (req) => canonicalTarget(req.url ?? '/'),
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Draining answers with our own problem+json (below) rather than Fastify's plain 503.
    return503OnClosing: false,
    // One line per request instead (http/plugins/request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    // Behind a configured reverse proxy, request.ip (logs, rate limits) is the client it names.
    trustProxy: config.trustProxy.length > 0 ? (address: string) => trust(address) : false,
    // Node would answer a missing Host with a bare 400 before the app sees the request; the
    // onRequest hook below refuses it as problem+json instead.
    // A whole request (headers and body) must arrive within AGENTGATE_REQUEST_TIMEOUT_MS, or its
    // socket is closed: a body that trickles in cannot hold a socket for ever. Node checks on
    // an interval, so the interval follows the bound.
    requestTimeout: config.requestTimeoutMs,
    http: {
      requireHostHeader: false,
      headersTimeout: Math.min(60_000, config.requestTimeoutMs),
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(config.requestTimeoutMs / 4))),
    },
    forceCloseConnections: 'idle',
    // No type coercion: a body's `"name": 5` or `"transition": ["start"]` is the wrong JSON type
    // and INVALID_REQUEST, not silently turned into "5" or "start". Parameters and queries are
    // all strings in our schemas, so they need no coercion either.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // Errors met before a route runs answer problem+json too (SPEC section 6).
    frameworkErrors: answerFrameworkError,
    clientErrorHandler(error, socket) {
      answerClientError(logger, error, socket);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // A start-up that fails half-way closes what the plugins registered so far opened.
  try {
    // No route serves CONNECT (NOT_FOUND, SPEC 4); unlistened, Node drops the socket unanswered.
    app.server.on('connect', (req: IncomingMessage, socket: Duplex) => {
      app.log.info({ code: 'NOT_FOUND', method: req.method }, 'no such route');
      socket.on('error', () => undefined);
      socket.end(rawProblem(new ApiError('NOT_FOUND', `no route for CONNECT ${req.url ?? ''}`)));
    });
    // Node answers an Expect other than 100-continue with a bare 417 unless this is listened for;
    // such an expectation cannot be met, so it is a malformed header.
    app.server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => {
      writeProblem(res, new ApiError('INVALID_REQUEST', 'the Expect header is not supported (only 100-continue is)'));
    });

    // Expect: 100-continue is answered by the auth hook once the token is accepted (or at once on
    // a public route), so an unauthenticated caller is never invited to send its body. Listening
    // here stops Node from sending 100 Continue itself.
    app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => app.routing(req, res));

    // Resources first, each closing itself; onClose runs in reverse, so the database goes last
    // but for tracing, whose spans of the shutdown itself are flushed after everything else.
    await app.register(tracingPlugin, { ...options.tracing, config });
    await app.register(metricsPlugin, { processMetrics: options.processMetrics });
    await app.register(databasePlugin, { config });
    await app.register(signingKeyPlugin, options.signingKey ?? {});
    await app.register(tokensPlugin, { config });
    await app.register(gatePlugin, { config });
    await app.register(eventsPlugin);
    await app.register(inFlightPlugin, { config });
    await app.register(lifecyclePlugin);
    const { lifecycle, metrics, gate, tokens, events, tracing, inFlight } = app;

    app.addSchema(Problem);

    await app.register(problemPlugin);
    await app.register(requestLog, { metrics });
    // Before every other onRequest hook, so that the server span covers admission too.
    await app.register(serverSpan, { tracing });
    await app.register(loadShedding, { maxEventLoopDelayMs: options.maxEventLoopDelayMs, startupGraceMs: options.loadSheddingGraceMs });
    await app.register(openapiPlugin);
    // Before authentication: a draining process answers SHUTTING_DOWN without a token lookup.
    app.addHook('onRequest', async (request, reply) => {
      reply.header('x-request-id', request.id);
      if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
        throw new ApiError('INVALID_REQUEST', 'an HTTP/1.1 request needs a Host header');
      }
      const access = request.routeOptions.config.access;
      if (lifecycle.draining && access !== undefined && access !== 'public') {
        throw new ApiError('SHUTTING_DOWN', 'agentgate is shutting down; retry on another replica');
      }
    });
    // One count per token for HTTP requests and WebSocket upgrades alike (these bypass Fastify).
    const concurrency = new TokenConcurrency({ requests: config.maxRequestsPerToken, websockets: config.maxWebSocketsPerToken });
    app.decorate('concurrency', concurrency);
    await app.register(authPlugin, { tokens, concurrency });

    // While draining, every response closes its connection, so keep-alive sockets do not hold the
    // shutdown open until the grace period ends.
    // A refusal sent before its request's body was read closes the connection: otherwise Node
    // keeps reading (and discarding) the body, as slowly as the caller cares to send it.
    app.addHook('onSend', async (request, reply) => {
      if (lifecycle.draining || (reply.statusCode >= 400 && !request.raw.complete)) reply.header('connection', 'close');
    });

    // An upgrade request is routed like any other request, so that it meets the same admission
    // (draining, authentication, per-token caps, rate limit, load shedding): the proxy route turns
    // a WebSocket one into a tunnel, other routes serve it as the plain request it also is.
    const websockets = new WebSockets({
      headersTimeoutMs: config.proxyHeadersTimeoutMs,
      idleTimeoutMs: config.wsIdleTimeoutMs,
      maxLifetimeMs: config.wsMaxLifetimeMs,
      trust,
      metrics,
      tracing,
    });
    app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      let res: ServerResponse;
      try {
        res = websockets.accept(req, socket, head);
      } catch (error) {
        // An upgrade pipelined behind a request still being answered: its socket already
        // carries that response (Node throws ERR_HTTP_SOCKET_ASSIGNED) and cannot take a
        // second. Nobody pipelines an upgrade; the connection ends.
        app.log.info({ code: 'INVALID_REQUEST', err: (error as Error).message }, 'pipelined upgrade refused');
        socket.destroy();
        return;
      }
      // Node stops parsing at an upgrade, so a body would never reach a route: a request that is
      // not a WebSocket (h2c from `curl --http2`, say) and has one is refused rather than served
      // without it.
      const declared = req.headers['content-length'];
      if (!isWebSocketUpgrade(req) && (req.headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0'))) {
        app.log.info({ code: 'INVALID_REQUEST', upgrade: req.headers.upgrade }, 'upgrade with a body refused');
        writeProblem(
          res,
          new ApiError('INVALID_REQUEST', 'a request with a body cannot ask for a protocol upgrade; send it without the Upgrade header'),
        );
        return;
      }
      app.routing(req, res);
    });

    await app.register(opsRoutes, { lifecycle, metrics, readyReuseMs: options.readiness?.reuseMs, migrationsEveryMs: options.readiness?.migrationsEveryMs, metricsReuseMs: options.readiness?.metricsReuseMs });
    await app.register(workspaceRoutes, { config, events });
    await app.register(tokenRoutes, { events });
    await app.register(agentRoutes, { events });
    // Cancels are matched per token, endpoint and request id; a cancel may reach a replica other
    // than the one running its call (SPEC 11: no affinity).
    const mcpCalls = new RunningCalls();
    const frontDoor = new FrontDoor({
      gate,
      config,
      metrics,
      calls: mcpCalls,
      inFlight,
      lists: new ToolLists(),
      validator: sharedSchemaValidator(),
      tracing,
      cancelElsewhere: cancelRelay((notices) => publishCancels(app.db, notices), app.log),
    });
    events.onCancel((notice) => {
      if (mcpCalls.cancel(notice.key, notice.reason) === 'cancelled') app.log.info('cancelled an MCP call on a cancel sent to another replica');
    });

    // Chat-server routes share one per-token budget when AGENTGATE_RATE_LIMIT_PER_MIN is set.
    await app.register(async (chat) => {
      if (config.rateLimitPerMin > 0) await chat.register(chatRateLimit, { perMinute: config.rateLimitPerMin });
      await chat.register(connRoutes, { gate, metrics });
      await chat.register(proxyRoutes, { gate, metrics, config, trust, websockets, tracing, inFlight });
      await chat.register(mcpRoutes, { gate, metrics, frontDoor, concurrency, drainTimeoutMs: config.requestTimeoutMs });
    });

    // preClose, not onClose: the server's close waits for every socket, upgraded ones included,
    // and onClose hooks run only after it.
    app.addHook('preClose', async () => websockets.closeAll());
    return app;
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
}

export type App = Awaited<ReturnType<typeof buildApp>>;
