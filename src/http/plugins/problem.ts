// One error handler and one not-found handler: every error leaves as RFC 9457 problem+json
// from the catalogue, and nothing internal (stack, SQL, addresses) reaches a body.
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import fp from 'fastify-plugin';
import type { FastifyBaseLogger, FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, type ErrorCode } from '../../domain/errors.js';
import { isDatabaseUnavailable } from '../../db/failures.js';
import { noteOutcome } from './request-log.js';

export function sendProblem(reply: FastifyReply, error: ApiError): FastifyReply {
  const problem = error.toProblem();
  if (error.extras.retryAfter !== undefined) reply.header('retry-after', String(error.extras.retryAfter));
  if (error.code === 'UNAUTHENTICATED') reply.header('www-authenticate', 'Bearer realm="agentgate"');
  return reply.code(problem.status).type('application/problem+json').send(problem);
}

/** Router errors (bad percent-encoding, overlong parameter) as problem+json: Fastify's `frameworkErrors`. */
export function answerFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const apiError = toApiError(error);
  noteOutcome(request, { code: apiError.code, detail: apiError.detail });
  void sendProblem(reply, apiError);
}

/**
 * Requests Node's HTTP parser rejects before Fastify sees them (not HTTP/1.1, bad header bytes,
 * headers over the size limit): Fastify's `clientErrorHandler`, answering problem+json where
 * Node and Fastify would answer plain JSON. Oversized headers are a malformed header too: contract
 * §6 has no 431.
 */
export function answerClientError(log: FastifyBaseLogger, error: Error & { code?: string }, socket: Socket): void {
  // A reset socket has nobody to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const detail =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? 'the request headers are larger than the limit'
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? 'the request did not arrive in time'
        : 'the request is not valid HTTP/1.1';
  log.info({ code: 'INVALID_REQUEST', parserError: error.code }, 'malformed request refused');
  // As Node itself: only on a socket that has not started another response.
  if (socket.writable && socket.bytesWritten === 0) socket.write(rawProblem(new ApiError('INVALID_REQUEST', detail)));
  socket.destroy(error);
}

/** A whole HTTP/1.1 problem response, for sockets no response object owns. */
export function rawProblem(error: ApiError): string {
  const body = JSON.stringify(error.toProblem());
  return `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** A problem on a bare Node response, for requests that never reach Fastify's routing. */
export function writeProblem(res: ServerResponse, error: ApiError): void {
  const body = JSON.stringify(error.toProblem());
  res.writeHead(error.status, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(body), connection: 'close' });
  res.end(body);
}

const FASTIFY_CODES: Partial<Record<string, [ErrorCode, string]>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: ['PAYLOAD_TOO_LARGE', 'the request body is larger than the limit'],
  FST_ERR_CTP_INVALID_JSON_BODY: ['INVALID_REQUEST', 'the request body is not valid JSON'],
  FST_ERR_CTP_EMPTY_JSON_BODY: ['INVALID_REQUEST', 'the request body is empty but declared as JSON'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ['INVALID_REQUEST', 'the request body must be application/json'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ['INVALID_REQUEST', 'the content-length does not match the body'],
  FST_ERR_CTP_INVALID_TYPE: ['INVALID_REQUEST', 'the content-type header is malformed'],
  FST_ERR_BAD_URL: ['INVALID_REQUEST', 'the request URL is malformed'],
  FST_ERR_ASYNC_CONSTRAINT: ['INVALID_REQUEST', 'the request could not be routed'],
};

/** Maps anything thrown by a route or by Fastify itself to a catalogue error. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation) {
    const where = fastifyError.validationContext ?? 'request';
    const first = fastifyError.validation[0];
    const path = first?.instancePath ? first.instancePath.replace(/^\//, '').replaceAll('/', '.') : '';
    const what = first?.message ?? 'is invalid';
    return new ApiError('INVALID_REQUEST', `${where}${path ? `.${path}` : ''} ${what}`);
  }
  const known = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (known) return new ApiError(known[0], known[1]);
  if (isDatabaseUnavailable(error)) {
    return new ApiError('DATABASE_UNAVAILABLE', 'the database could not be reached in time', { retryAfter: 1 });
  }
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode < 500) {
    return new ApiError('INVALID_REQUEST', 'the request is malformed');
  }
  return new ApiError('INTERNAL', 'an internal error occurred; it was logged with the request id');
}

export default fp(
  (app) => {
    app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
      const apiError = toApiError(error);
      noteOutcome(request, {
        code: apiError.code,
        detail: apiError.detail,
        // Why a 5xx happened (a database timeout, a refused connection): the answer's detail
        // is generic on purpose, the log line is not.
        ...(apiError.status >= 500 && error !== apiError ? { cause: (error as Error).message } : {}),
      });
      // The request's own line says the rest; a failure of ours gets its stack too.
      if (apiError.code === 'INTERNAL') request.log.error({ code: apiError.code, err: error }, 'request failed');
      return sendProblem(reply, apiError);
    });
    app.setNotFoundHandler((request, reply) => {
      noteOutcome(request, { code: 'NOT_FOUND' });
      return sendProblem(reply, new ApiError('NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0] ?? ''}`));
    });
  },
  { name: 'agentgate-problem' },
);
