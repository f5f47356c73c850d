// Codes the TypeScript client (agentgate/client) gives on its own, for answers that are not the
// gate's problem+json. They never reuse a catalogue code (a test checks it).

/** Statuses an intermediary uses for "try again", for answers that are not the gate's. */
export const TRANSIENT_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

export interface ClientCodeEntry {
  /** The error's status: the answer's, or 0 when there was none. */
  status: 'of the answer' | 0;
  /** Unset: retryable when the status is one of TRANSIENT_STATUSES. */
  retryable?: boolean;
  hint: string;
  meaning: string;
  chatServer: string;
}

export const CLIENT_ERROR_CODES = {
  UNEXPECTED_RESPONSE: {
    status: 'of the answer',
    hint: 'agentgate answered in an unexpected way, perhaps through a proxy in between; try again shortly.',
    meaning:
      'An answer agentgate did not write as a problem: a proxy or load balancer in between answering HTML or an empty 502, ' +
      'or a success whose body is not the documented JSON. On a proxied call: every answer, a 2xx included, without ' +
      '`x-agentgate-upstream: agent` that is not a problem+json with a `code`; and the gate’s refusal of a `HEAD`, whose ' +
      'answer has no body to carry the code (the error has the refusal’s status and `Retry-After`).',
    chatServer:
      'Retry the transient ones (429, 502, 503, 504) as the helper does, a proxied POST or PATCH only when idempotent (it may ' +
      'have reached the agent); otherwise check what stands between the chat server ' +
      'and agentgate (it must pass `x-agentgate-upstream` through).',
  },
  GATE_UNREACHABLE: {
    status: 0,
    retryable: true,
    hint: 'agentgate could not be reached just now; try again shortly.',
    meaning:
      'No answer at all: the connection to agentgate was refused or reset, or DNS or TLS failed. A proxied request may have ' +
      'reached the agent before the connection broke.',
    chatServer: 'Retry `conn()` and `agent()`, and proxied requests only when idempotent; check the base URL if it lasts.',
  },
  UPGRADE_FAILED: {
    status: 0,
    retryable: true,
    hint: 'The upgrade was refused; the gate or the agent may be at a limit; try again shortly.',
    meaning:
      'A WebSocket upgrade was refused after `conn()` had succeeded, and a second `conn()` still succeeds, so the refusal ' +
      'is not a state of the workspace: the gate at its per-token WebSocket cap (`AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN`), or ' +
      'the agent declining the upgrade (a tool without WebSockets at that path, or at a limit of its own). The standard ' +
      'WebSocket does not say which. A refusal that `conn()` also gives (a goodbye in between, draining) is thrown as its own code.',
    chatServer:
      'Retry shortly, as the helper does; if it lasts, close WebSockets the token no longer needs, and check that the tool ' +
      'serves WebSockets at that path.',
  },
} as const satisfies Record<string, ClientCodeEntry>;

export type ClientErrorCode = keyof typeof CLIENT_ERROR_CODES;
