// An AbortSignal that fires when the caller goes away before its response is complete. It
// watches the reply's `close` (the request's own `close` fires once its body is read).
import type { FastifyReply } from 'fastify';
import { CallerGone } from '../gate/shared-dials.js';

export function callerSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const res = reply.raw;
  if (res.destroyed) controller.abort(new CallerGone('the caller went away'));
  else
    res.once('close', () => {
      if (!res.writableFinished) controller.abort(new CallerGone('the caller went away'));
    });
  return controller.signal;
}
