// What Node's HTTP server would answer on its own, before any route: answered the way every
// other refusal is (problem+json), or routed like any request; and, at close, the connections
// that never sent a byte.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import fp from 'fastify-plugin';
import { ApiError } from '../../domain/errors.js';
import { rawProblem, writeProblem } from './problem.js';

export default fp(
  async (app) => {
    // No route serves CONNECT (NOT_FOUND, contract §4); unlistened, Node drops the socket unanswered.
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

    // Node's close ends idle keep-alive connections, but waits for one that was opened and never
    // sent a byte (a client's pre-connect, a load balancer's TCP check, or anyone's) until its
    // headers timeout: a shutdown would wait that long, or its whole grace, for nothing. Such a
    // connection has no request to finish; it is closed with the server. (Its byte count is read
    // at close: a 'data' listener would take the socket off the parser's fast path.)
    const open = new Set<Socket>();
    app.server.on('connection', (socket: Socket) => {
      open.add(socket);
      socket.once('close', () => open.delete(socket));
    });
    app.addHook('preClose', async () => {
      for (const socket of open) if (socket.bytesRead === 0) socket.destroy();
    });
  },
  { name: 'agentgate-raw-server' },
);
