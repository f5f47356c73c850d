// Sends the MCP cancels that matched no call on this replica to every replica (NOTIFY), with a
// bound on the notices in flight: a flood of cancels, or a database that does not answer, costs
// dropped cancels (the caller's request ending still cancels), never a pool held by them.
import type { FastifyBaseLogger } from 'fastify';
import type { CancelNotice } from '../domain/events.js';

export const MAX_CANCEL_NOTICES_IN_FLIGHT = 16;

/** `send` resolves with how many of the notices it carried. */
export function cancelRelay(send: (notices: readonly CancelNotice[]) => Promise<number>, log: FastifyBaseLogger): (notices: readonly CancelNotice[]) => void {
  let inFlight = 0;
  // Each trouble is told once until it is over, not once per cancel.
  let full = false;
  let failing = false;
  return (notices) => {
    if (inFlight >= MAX_CANCEL_NOTICES_IN_FLIGHT) {
      if (!full) log.warn({ inFlight }, 'too many MCP cancels on their way to the other replicas; new ones are dropped');
      full = true;
      return;
    }
    full = false;
    inFlight += 1;
    send(notices)
      .then(
        (sent) => {
          failing = false;
          if (sent < notices.length) log.info({ dropped: notices.length - sent }, 'MCP cancels whose request ids are too long to send to the other replicas were dropped');
        },
        (error: Error) => {
          if (!failing) log.warn({ err: error.message }, 'could not send MCP cancels to the other replicas');
          failing = true;
        },
      )
      .finally(() => {
        inFlight -= 1;
      });
  };
}
