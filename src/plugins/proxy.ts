// The proxy's two halves, decorated as `app.httpProxy` and `app.websockets`: HTTP calls, and the
// upgrade sockets the server hands over. An upgrade request is routed like any other request,
// so that it meets the same admission (draining, authentication, per-token caps, rate limit,
// load shedding): the proxy route turns a WebSocket one into a tunnel, other routes serve it as
// the plain request it also is. Upgraded sockets are closed before the server's close waits for
// them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { ApiError } from '../domain/errors.js';
import { writeProblem } from '../http/plugins/problem.js';
import { HttpProxy } from '../proxy/proxied-call.js';
import { trustProxyFrom } from '../proxy/trust-proxy.js';
import { WebSockets, isWebSocketUpgrade } from '../proxy/websocket.js';

declare module 'fastify' {
  interface FastifyInstance {
    httpProxy: HttpProxy;
    websockets: WebSockets;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const trust = trustProxyFrom(config.trustProxy);
    const { metrics, tracing } = app;
    app.decorate('httpProxy', new HttpProxy({ bodyLimitBytes: config.bodyLimitBytes, headersTimeoutMs: config.proxyHeadersTimeoutMs, trust, tracing }));
    const websockets = new WebSockets({
      headersTimeoutMs: config.proxyHeadersTimeoutMs,
      idleTimeoutMs: config.wsIdleTimeoutMs,
      maxLifetimeMs: config.wsMaxLifetimeMs,
      trust,
      metrics,
      tracing,
    });
    app.decorate('websockets', websockets);
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
        writeProblem(res, new ApiError('INVALID_REQUEST', 'a request with a body cannot ask for a protocol upgrade; send it without the Upgrade header'));
        return;
      }
      app.routing(req, res);
    });
    // preClose, not onClose: the server's close waits for every socket, upgraded ones included,
    // and onClose hooks run only after it.
    app.addHook('preClose', async () => websockets.closeAll());
  },
  { name: 'agentgate-proxy', dependencies: ['agentgate-metrics', 'agentgate-tracing'] },
);
