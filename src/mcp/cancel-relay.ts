// Records the MCP cancels that matched no call on this replica for every replica to apply, with
// bounds on what is in flight: a few per token, so that one tenant's flood of cancels cannot
// crowd out the others', and a few more for the process, so that a database that does not answer
// costs dropped cancels (the caller's request ending still cancels), never a pool held by them.
import type { FastifyBaseLogger } from 'fastify';
import type { CancelNotice } from '../domain/events.js';

/** Cancel records one token may have on their way at once. */
export const MAX_CANCELS_IN_FLIGHT_PER_TOKEN = 2;
/** Cancel records the process may have on their way at once, all tokens together. */
export const MAX_CANCELS_IN_FLIGHT = 16;

export type CancelRelay = (tokenKey: string, notices: readonly CancelNotice[]) => void;

/** `send` resolves with how many of the notices it carried. */
export function cancelRelay(send: (notices: readonly CancelNotice[]) => Promise<number>, log: FastifyBaseLogger): CancelRelay {
  const perToken = new Map<string, number>();
  let inFlight = 0;
  // Each trouble is told once until it is over, not once per cancel.
  let full = false;
  let failing = false;
  return (tokenKey, notices) => {
    const mine = perToken.get(tokenKey) ?? 0;
    if (mine >= MAX_CANCELS_IN_FLIGHT_PER_TOKEN || inFlight >= MAX_CANCELS_IN_FLIGHT) {
      if (!full) log.warn({ inFlight, tokenInFlight: mine }, 'too many MCP cancels on their way to the other replicas; new ones are dropped');
      full = true;
      return;
    }
    full = false;
    inFlight += 1;
    perToken.set(tokenKey, mine + 1);
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
        const left = (perToken.get(tokenKey) ?? 1) - 1;
        if (left > 0) perToken.set(tokenKey, left);
        else perToken.delete(tokenKey);
      });
  };
}
