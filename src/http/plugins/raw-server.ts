// What Node's HTTP server would answer on its own, before any route: answered the way every
// other refusal is (problem+json), or routed like any request.
import type { IncomingMessage, ServerResponse } from 'node:http';
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
  },
  { name: 'agentgate-raw-server' },
);
