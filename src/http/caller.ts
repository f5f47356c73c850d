// The caller of a request, as the routes see it: a signal that fires when it goes away before
// its answer is complete, and the one way a route answers a caller that has gone.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CallerGone } from '../domain/failures.js';
import { logRequest, noteOutcome } from './plugins/request-log.js';

/** Aborted (with CallerGone) when the caller goes away. It watches the reply's `close` (the request's own fires once its body is read). */
export function callerSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const res = reply.raw;
  if (res.destroyed) controller.abort(new CallerGone());
  else
    res.once('close', () => {
      if (!res.writableFinished) controller.abort(new CallerGone());
    });
  return controller.signal;
}

/**
 * Answers a caller that went away: nobody reads an answer, so none is written; the request is
 * logged as 499 (`client_closed`) and its socket closed.
 */
export function answerCallerGone(request: FastifyRequest, reply: FastifyReply, elapsedMs = reply.elapsedTime): void {
  noteOutcome(request, { code: 'client_closed' });
  logRequest(request, 499, elapsedMs);
  if (!reply.sent) reply.hijack();
  reply.raw.destroy();
}
