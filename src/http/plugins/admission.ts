// The first checks of every request, before authentication: its id echoed, an HTTP/1.1 request
// without Host refused, and while draining, every authenticated route refused with
// SHUTTING_DOWN (without a token lookup) and every response closing its connection.
import fp from 'fastify-plugin';
import { ApiError } from '../../domain/errors.js';
import type { Lifecycle } from '../../lifecycle.js';

export default fp<{ lifecycle: Lifecycle }>(
  async (app, { lifecycle }) => {
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
    // While draining, every response closes its connection, so keep-alive sockets do not hold the
    // shutdown open until the grace period ends.
    // A refusal sent before its request's body was read closes the connection: otherwise Node
    // keeps reading (and discarding) the body, as slowly as the caller cares to send it.
    app.addHook('onSend', async (request, reply) => {
      if (lifecycle.draining || (reply.statusCode >= 400 && !request.raw.complete)) reply.header('connection', 'close');
    });
  },
  { name: 'agentgate-admission', dependencies: ['agentgate-problem'] },
);
