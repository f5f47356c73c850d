// Dials for the gate (contract §5 steps 5 to 8): one dial in flight per agent, shared by every
// call that needs it and cached when it succeeds; a failure read once (./dial-outcome.ts) for
// the metric, the memory of failed dials, the span and each waiting call's answer.
import { SpanKind, type Span } from '@opentelemetry/api';
import type { CurrentAgent } from '../db/gate-read.js';
import type { ProblemExtras } from '../domain/errors.js';
import type { Metrics } from '../metrics.js';
import type { AgentTransport } from '../transport/agent-transport.js';
import { ATTR, childSpan, endSpan, failureOutcome, type Tracing } from '../tracing/tracing.js';
import type { ConnCache, Lease } from './conn-cache.js';
import { meaningOfFailedDial } from './dial-outcome.js';
import { FailedDials, type Clock } from './failed-dials.js';
import type { RememberedFailure } from './decide.js';
import type { GateRequest } from './gate-types.js';
import { SharedDials } from './shared-dials.js';

export interface DialerOptions {
  transport: AgentTransport;
  cache: ConnCache;
  /** The dial bound (AGENTGATE_DIAL_TIMEOUT_MS). */
  timeoutMs: number;
  /** How long a failed dial is remembered (AGENTGATE_DIAL_BACKOFF_MS). */
  backoffMs: number;
  metrics: Metrics;
  tracing: Tracing;
  clock?: Clock | undefined;
}

export class Dialer {
  /**
   * A dial's value is its own lease on the connection it cached; each waiter is handed a lease
   * of its own at once, so an eviction between the dial and the waiter cannot close it first.
   */
  readonly #dials = new SharedDials<Lease>({ handOut: (lease) => lease.share(), settled: (lease) => lease.release() });
  readonly #failed: FailedDials;

  constructor(private readonly options: DialerOptions) {
    this.#failed = new FailedDials(options.backoffMs, { clock: options.clock });
  }

  /** The failure remembered for the agent as it was read, if any. */
  recall(agent: CurrentAgent): RememberedFailure | undefined {
    const recalled = this.#failed.recall(agent.id, agent.lastConnectedAt);
    return recalled && { code: recalled.failure.code, detail: recalled.failure.detail, retryAfterSeconds: recalled.retryAfterSeconds };
  }

  /** The agent connected anew: its failures are history. */
  forget(agentId: string): void {
    this.#failed.forget(agentId);
  }

  /** Callers waiting on the agent's dial now (observation, tests). */
  waiters(agentId: string): number {
    return this.#dials.waiters(agentId);
  }

  /**
   * Joins or starts the agent's dial; a lease on its connection, or undefined when the dial
   * joined was to another address than the one this call read: the caller then starts over.
   */
  async dial(req: GateRequest, agent: CurrentAgent, extras: ProblemExtras, budgetMs: number): Promise<Lease | undefined> {
    // One span per call that needed a dial, started or joined; the dial's own health probe
    // carries the trace of the call that started it.
    const span = childSpan(this.options.tracing, req.trace, 'agentgate.dial', SpanKind.CLIENT);
    span?.setAttribute(ATTR.agentId, agent.id);
    let lease: Lease;
    try {
      let joined: boolean;
      ({ value: lease, joined } = await this.#dials.join(agent.id, req.signal, budgetMs, (signal) => this.#dialAndCache(req, agent, signal, span)));
      span?.setAttribute(DIAL_JOINED, joined);
    } catch (error) {
      const meaning = meaningOfFailedDial(error);
      const answer = meaning.answer(extras);
      if (span) {
        span.setAttribute(DIAL_RESULT, meaning.span);
        endSpan(span, failureOutcome(answer));
      }
      throw answer;
    }
    const current = lease.conn.target.address === agent.address;
    if (span) {
      // `superseded`: the dial joined was to an address this call did not read; it starts over.
      span.setAttribute(DIAL_RESULT, current ? 'ok' : 'superseded');
      endSpan(span, { code: 'ok' });
    }
    if (current) return lease;
    lease.release();
    return undefined;
  }

  /** The dial itself, run once for all its waiters, with its full bound whoever started it. */
  async #dialAndCache(req: GateRequest, agent: CurrentAgent, signal: AbortSignal, span: Span | undefined): Promise<Lease> {
    const { metrics, tracing, transport, cache, timeoutMs } = this.options;
    const started = performance.now();
    const log = req.log.child({ workspaceId: req.workspaceId, agentId: agent.id });
    metrics.dialsInFlight.inc();
    try {
      const conn = await transport.open(
        { agentId: agent.id, workspaceId: req.workspaceId, buildId: agent.buildId, address: agent.address },
        { timeoutMs, signal, trace: span && tracing.headersFor(span) },
      );
      metrics.dialSeconds.observe({ result: 'ok' }, (performance.now() - started) / 1000);
      this.#failed.forget(agent.id);
      log.info({ dialMs: Math.round(conn.dialMs) }, 'dialed the agent');
      return cache.add(conn);
    } catch (error) {
      const meaning = meaningOfFailedDial(error);
      if (meaning.metric) metrics.dialSeconds.observe({ result: meaning.metric }, (performance.now() - started) / 1000);
      if (meaning.remember) {
        this.#failed.remember(agent.id, agent.lastConnectedAt, meaning.remember.code, meaning.remember.detail);
        log.warn({ code: meaning.remember.code, err: meaning.remember.detail }, 'dial failed');
      } else {
        log.info({ code: 'client_closed' }, 'dial cancelled: every caller left');
      }
      throw error;
    } finally {
      metrics.dialsInFlight.dec();
    }
  }
}

const DIAL_RESULT = 'agentgate.dial.result';
const DIAL_JOINED = 'agentgate.dial.joined';
