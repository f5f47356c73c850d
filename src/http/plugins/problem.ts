// One error handler and one not-found handler: every error leaves as RFC 9457 problem+json
// from the catalogue, and nothing internal (stack, SQL, addresses) reaches a body.
import fp from 'fastify-plugin';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, type ErrorCode } from '../../errors.js';
import { isDatabaseUnavailable } from '../../db/failures.js';

export function sendProblem(reply: FastifyReply, error: ApiError): FastifyReply {
  const problem = error.toProblem();
  if (error.extras.retryAfter !== undefined) reply.header('retry-after', String(error.extras.retryAfter));
  if (error.code === 'UNAUTHENTICATED') reply.header('www-authenticate', 'Bearer realm="agentgate"');
  return reply.code(problem.status).type('application/problem+json').send(problem);
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
      const log = { code: apiError.code, status: apiError.status };
      if (apiError.code === 'INTERNAL') request.log.error({ ...log, err: error }, 'request failed');
      else if (apiError.status >= 500) request.log.warn({ ...log, err: (error as Error).message }, 'request failed');
      else request.log.info({ ...log, detail: apiError.detail }, 'request refused');
      return sendProblem(reply, apiError);
    });
    app.setNotFoundHandler((request, reply) => {
      request.log.info({ code: 'NOT_FOUND' }, 'no such route');
      return sendProblem(reply, new ApiError('NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0] ?? ''}`));
    });
  },
  { name: 'agentgate-problem' },
);
