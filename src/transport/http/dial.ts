// Dialing an agent at its address: open a connection and `GET <address>/health`; any 2xx within
// the bound is success (contract §5 step 5). The bound is our own timer; why a dial failed is
// told by the reason the dial was aborted with (our timeout, or every waiter leaving), never by
// "was it aborted".
import { SIGNATURE_HEADER } from '../../auth/gate-signature.js';
import type { GateSigningKey } from '../../auth/gate-signing-key.js';
import { HttpConnection, type ConnectionPolicy } from './connection.js';
import { DialFailure, DialTimeout, type DialOutcome } from '../../domain/failures.js';
import { isTlsRefusal } from './connector.js';
import type { AgentTarget, AgentTransport, OpenOptions } from '../agent-transport.js';

/** Pure: what a failed dial means, from the abort reason (if aborted) and the error. */
export function dialOutcome(aborted: boolean, reason: unknown): DialOutcome {
  if (!aborted) return 'unreachable';
  return reason instanceof DialTimeout ? 'timeout' : 'cancelled';
}

/** Agents reached by dialing the address they registered. */
export class HttpTransport implements AgentTransport {
  constructor(
    private readonly policy: ConnectionPolicy,
    private readonly signingKey: GateSigningKey,
  ) {}

  open(target: AgentTarget, options: OpenOptions): Promise<HttpConnection> {
    return dialAgent(target, { ...this.policy, ...options, signingKey: this.signingKey });
  }
}

export type DialOptions = OpenOptions & ConnectionPolicy & { signingKey: GateSigningKey };

export async function dialAgent(target: AgentTarget, options: DialOptions): Promise<HttpConnection> {
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DialTimeout(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
  const onAbandon = () => controller.abort(options.signal.reason);
  if (options.signal.aborted) onAbandon();
  else options.signal.addEventListener('abort', onAbandon, { once: true });

  const conn = new HttpConnection(target, options);
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
