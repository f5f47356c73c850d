// Dialing an agent: open a connection and `GET <address>/health`; any 2xx within the bound is
// success (SPEC 5 step 5). The bound is our own timer; why a dial failed is told by the reason
// the dial was aborted with (our timeout, or every waiter leaving), never by "was it aborted".
import { SIGNATURE_HEADER } from '../auth/gate-signature.js';
import { AgentConnection, type AgentTarget, type ConnectionOptions } from './agent-connection.js';
import type { FailureCode } from '../domain/failure-codes.js';
import { isTlsRefusal } from './connector.js';
import type { TraceHeaders } from '../tracing/trace-context.js';

/** Abort reason: the dial's own timeout fired. */
export class DialTimeout extends Error {
  override name = 'DialTimeout';
  readonly code = 'AGENTGATE_DIAL_TIMEOUT' satisfies FailureCode;
}

/** Abort reason: nobody waits for the dial any more. */
export class DialAbandoned extends Error {
  override name = 'DialAbandoned';
  readonly code = 'AGENTGATE_DIAL_ABANDONED' satisfies FailureCode;
}

export type DialOutcome = 'unreachable' | 'timeout' | 'cancelled';

const OUTCOME_CODES = {
  unreachable: 'AGENTGATE_DIAL_UNREACHABLE',
  timeout: 'AGENTGATE_DIAL_TIMEOUT',
  cancelled: 'AGENTGATE_DIAL_ABANDONED',
} as const satisfies Record<DialOutcome, FailureCode>;

export class DialFailure extends Error {
  override name = 'DialFailure';
  readonly code: (typeof OUTCOME_CODES)[DialOutcome];
  constructor(
    readonly outcome: DialOutcome,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = OUTCOME_CODES[outcome];
  }
}

/** Pure: what a failed dial means, from the abort reason (if aborted) and the error. */
export function dialOutcome(aborted: boolean, reason: unknown): DialOutcome {
  if (!aborted) return 'unreachable';
  return reason instanceof DialTimeout ? 'timeout' : 'cancelled';
}

export interface DialOptions extends ConnectionOptions {
  timeoutMs: number;
  /** Aborted (with DialAbandoned) when nobody waits any more. */
  signal: AbortSignal;
  /** The dial's trace context, sent with the health check (tracing on). */
  trace?: TraceHeaders | undefined;
}

export async function dialAgent(target: AgentTarget, options: DialOptions): Promise<AgentConnection> {
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DialTimeout(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
  const onAbandon = () => controller.abort(options.signal.reason);
  if (options.signal.aborted) onAbandon();
  else options.signal.addEventListener('abort', onAbandon, { once: true });

  const conn = new AgentConnection(target, options);
  conn.setDialSignal(controller.signal);
  try {
    const path = `${conn.basePath}/health`;
    const response = await conn.pool.request({
      method: 'GET',
      path,
      headers: options.trace ? { [SIGNATURE_HEADER]: conn.sign('GET', path), ...options.trace } : { [SIGNATURE_HEADER]: conn.sign('GET', path) },
      signal: controller.signal,
      // The dial's own timer is its bound; the pool's headers timeout is for proxied calls and
      // would otherwise cut a dial short as "unreachable" when it is the shorter of the two.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    await response.body.dump({ limit: 64 * 1024, signal: controller.signal });
    if (response.statusCode < 200 || response.statusCode > 299) {
      throw new DialFailure('unreachable', `the agent's health check answered ${response.statusCode}`);
    }
    conn.setDialSignal(undefined);
    conn.dialedAt = new Date();
    conn.dialMs = performance.now() - started;
    return conn;
  } catch (error) {
    // Read why before cleaning up: the timer may fire, or the last waiter leave, meanwhile.
    const outcome = dialOutcome(controller.signal.aborted, controller.signal.reason);
    // Settle at once (nobody should join a dial that already failed); the sockets go meanwhile.
    void conn.destroy();
    if (error instanceof DialFailure) throw error;
    throw new DialFailure(outcome, describe(outcome, error), { cause: error });
  } finally {
    clearTimeout(timer);
    options.signal.removeEventListener('abort', onAbandon);
  }
}

function describe(outcome: DialOutcome, error: unknown): string {
  if (outcome === 'timeout') return 'the agent did not answer its health check in time';
  if (outcome === 'cancelled') return 'the dial was cancelled: nobody waits for it';
  const code = (error as { code?: string }).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'the agent refused the connection';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return "the agent's host name does not resolve";
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
    case 'EPIPE':
      return 'the agent closed the connection';
    case 'AGENTGATE_CONNECT_TIMEOUT':
      return 'connecting to the agent timed out';
    default:
      if (typeof code === 'string' && isTlsRefusal(code)) {
        return "the agent's TLS certificate was refused";
      }
      return 'the agent could not be reached';
  }
}
