// What a failed dial means, decided once (pure): what agentgate_dial_seconds records, what the
// failed-dial memory keeps (contract §5 step 8), the dial span's result, and what the call that
// waited for it is answered. The dial itself is shared, so its own failure (metric, memory) is
// read once per dial, and each waiting call's (answer, span) once per call.
import { ApiError, type ProblemExtras } from '../domain/errors.js';
import { CallerGone, DialFailure, TooManyWaiters, WaitExpired } from '../domain/failures.js';
import type { FailedDialCode } from './failed-dials.js';

export interface FailedDialMeaning {
  /** agentgate_dial_seconds{result} of the dial that failed (a wait that ended alone has none). */
  metric: 'unreachable' | 'timeout' | 'client_closed' | undefined;
  /** What the failed-dial memory keeps; undefined when the failure says nothing of the agent. */
  remember: { code: FailedDialCode; detail: string } | undefined;
  /** The dial span's result, in the words of the metric where they are the same. */
  span: 'unreachable' | 'timeout' | 'client_closed' | 'wait_expired' | 'shed' | 'error';
  /** What the waiting call throws: its answer, CallerGone, or an unexpected error as it is. */
  answer(extras: ProblemExtras): Error;
}

export function meaningOfFailedDial(error: unknown): FailedDialMeaning {
  if (error instanceof CallerGone) return { metric: undefined, remember: undefined, span: 'client_closed', answer: () => error };
  // This call's own budget ran out, not the agent's: not remembered.
  if (error instanceof WaitExpired) return { metric: undefined, remember: undefined, span: 'wait_expired', answer: (extras) => error.answer(extras) };
  // Shed at once: OVERLOADED, since nothing is known of the agent yet.
  if (error instanceof TooManyWaiters) {
    return { metric: undefined, remember: undefined, span: 'shed', answer: (extras) => error.answer({ ...extras, retryAfter: 1 }) };
  }
  if (error instanceof DialFailure) {
    const code = error.answerCode;
    // A dial is cancelled only once every caller has left: this one too.
    if (code === null) return { metric: 'client_closed', remember: undefined, span: 'client_closed', answer: () => new CallerGone() };
    const failed = code as FailedDialCode;
    const outcome = error.outcome === 'timeout' ? 'timeout' : 'unreachable';
    return { metric: outcome, remember: { code: failed, detail: error.message }, span: outcome, answer: (extras) => new ApiError(failed, error.message, extras) };
  }
  // A transport that failed without saying how: the agent could not be reached, as far as
  // anyone can tell; the waiting call gets the unexpected error itself (a bug to see).
  const detail = error instanceof Error ? error.message : String(error);
  return {
    metric: 'unreachable',
    remember: { code: 'AGENT_UNREACHABLE', detail },
    span: 'error',
    answer: () => (error instanceof Error ? error : new Error(detail)),
  };
}
