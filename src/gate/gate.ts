// The decision flow of every `conn` call (contract §5): one fresh read, strong signals answered
// at once, weak ones confirmed by a dial, cached connections reused, dials shared and bounded,
// failures remembered, rebuilds noticed, and a database outage survived on a live cached
// connection. The rules are pure (./classify.ts, ./decide.ts, ./dial-outcome.ts); this is the
// loop that applies them, and the one place that counts its own outcomes.
import { trace, type Context } from '@opentelemetry/api';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { GateEvent } from '../domain/events.js';
import { ApiError, type ProblemExtras } from '../domain/errors.js';
import { CallerGone } from '../domain/failures.js';
import type { Metrics } from '../metrics.js';
import type { AgentTarget, AgentTransport } from '../transport/agent-transport.js';
import { ATTR, TRACING_OFF, endSpan, failureOutcome, type Tracing } from '../tracing/tracing.js';
import { disconnectedSeconds } from './classify.js';
import { ConnCache, type CachedConnections } from './conn-cache.js';
import { decide } from './decide.js';
import { Dialer } from './dialer.js';
import type { Clock } from './failed-dials.js';
import { DatabaseUnreadable, FreshRead, databaseUnavailable, type GateReads } from './fresh-read.js';
import type { AgentStatusRead, GateRequest, GateSuccess, StatusRequest } from './gate-types.js';
import { Snapshots } from './snapshots.js';

export type { AgentStatusRead, GateRequest, GateSuccess } from './gate-types.js';

export interface GateOptions {
  /** Where the rows come from (the database, batched; a test's own). */
  reads: GateReads;
  /** How agents are reached (dialing their address; a test's own). */
  transport: AgentTransport;
  config: Pick<Config, 'dialTimeoutMs' | 'dbTimeoutMs' | 'dialBackoffMs' | 'disconnectGraceMs' | 'inactiveTimeoutMs' | 'maxConns' | 'connIdleMs'>;
  metrics: Metrics;
  logger: FastifyBaseLogger;
  tracing?: Tracing | undefined;
  /** The clock of the failed-dial memory (tests move it instead of sleeping). */
  clock?: Clock | undefined;
}

export class Gate {
  readonly #cache: ConnCache;
  readonly #dialer: Dialer;
  readonly #snapshots: Snapshots;
  readonly #fresh: FreshRead;
  readonly #config: GateOptions['config'];
  readonly #metrics: Metrics;
  readonly #logger: FastifyBaseLogger;
  readonly #tracing: Tracing;
  readonly #lostListeners: Array<(target: AgentTarget, reason: Error) => void> = [];

  constructor(options: GateOptions) {
    const { config, metrics } = options;
    this.#config = config;
    this.#metrics = metrics;
    this.#logger = options.logger;
    this.#tracing = options.tracing ?? TRACING_OFF;
    this.#cache = new ConnCache({
      max: config.maxConns,
      idleMs: config.connIdleMs,
      onSizeChange: (size) => metrics.connections.set(size),
      onLost: (conn, reason) => {
        this.#logger.info({ agentId: conn.agentId, workspaceId: conn.target.workspaceId, err: reason.message }, 'lost the connection to an agent');
        for (const listener of this.#lostListeners) listener(conn.target, reason);
      },
    });
    this.#dialer = new Dialer({
      transport: options.transport,
      cache: this.#cache,
      timeoutMs: config.dialTimeoutMs,
      backoffMs: config.dialBackoffMs,
      metrics,
      tracing: this.#tracing,
      clock: options.clock,
    });
    this.#snapshots = new Snapshots(Math.max(1000, config.maxConns), (agentId) => {
      if (this.#cache.evict(agentId)) this.#logger.info({ agentId }, 'closed the connection of an agent that is no longer current');
    });
    this.#fresh = new FreshRead({
      reads: options.reads,
      snapshots: this.#snapshots,
      inactiveTimeoutMs: config.inactiveTimeoutMs,
      dbTimeoutMs: config.dbTimeoutMs,
      tracing: this.#tracing,
    });
  }

  /** The cached connections, for observation (metrics, tests); only the gate uses or evicts them. */
  get connections(): CachedConnections {
    return this.#cache;
  }

  /**
   * Told when a cached connection is lost as a whole (a transport that knows, such as a tunnel
   * the agent opened): the work running on it ends at once, whatever its kind.
   */
  onConnectionLost(listener: (target: AgentTarget, reason: Error) => void): void {
    this.#lostListeners.push(listener);
  }

  /** Callers waiting on the agent's dial now (observation, tests). */
  dialWaiters(agentId: string): number {
    return this.#dialer.waiters(agentId);
  }

  /** Status snapshot for `GET .../agent`: one read, no dial, no side effect. */
  async status(req: StatusRequest): Promise<AgentStatusRead> {
    try {
      const { agent, classification } = await this.#fresh.read(req);
      return { agent, classification };
    } catch (error) {
      if (!(error instanceof DatabaseUnreadable)) throw error;
      throw databaseUnavailable(req.workspaceId);
    }
  }

  /**
   * Ensures a live connection to the workspace's current agent (contract §5), and counts the
   * decision in agentgate_conn_total. Throws the refusal (ApiError), or CallerGone.
   */
  connect(req: GateRequest): Promise<GateSuccess> {
    return this.#tracing.enabled && req.trace ? this.#tracedConnect(req, req.trace) : this.#connect(req);
  }

  /** connect() inside an `agentgate.gate` span: the decision, its outcome and what it rested on. */
  async #tracedConnect(req: GateRequest, parent: Context): Promise<GateSuccess> {
    const span = this.#tracing.tracer.startSpan(
      'agentgate.gate',
      {
        attributes: {
          [ATTR.workspaceId]: req.workspaceId,
          ...(req.agentName === undefined ? {} : { [ATTR.agentName]: req.agentName }),
        },
      },
      parent,
    );
    try {
      const success = await this.#connect({ ...req, trace: trace.setSpan(parent, span) });
      span.setAttributes({ [ATTR.agentId]: success.agent.id, [ATTR.cached]: success.cached, [ATTR.degraded]: success.degraded });
      endSpan(span, { code: 'ok' });
      return success;
    } catch (error) {
      if (error instanceof ApiError) {
        const { agentId, agentStatus } = error.extras;
        if (agentId !== undefined) span.setAttribute(ATTR.agentId, agentId);
        if (agentStatus !== undefined) span.setAttribute('agentgate.agent.status', agentStatus);
      }
      span.setAttribute(ATTR.degraded, false);
      endSpan(span, failureOutcome(error));
      throw error;
    }
  }

  /** The loop. Each decision is counted in agentgate_conn_total where it ends, inside the loop's own async function (a wrapper would cost a promise per call). */
  async #connect(req: GateRequest): Promise<GateSuccess> {
    try {
      const deadline = (req.startedAt ?? performance.now()) + this.#config.dialTimeoutMs + 2 * this.#config.dbTimeoutMs;
      const remaining = () => deadline - performance.now();
      let dials = 0;
      for (;;) {
        let snapshot;
        try {
          snapshot = await this.#fresh.read(req, Math.min(remaining(), this.#config.dbTimeoutMs));
        } catch (error) {
          if (!(error instanceof DatabaseUnreadable)) throw error;
          return this.#counted(this.#degraded(req, error));
        }
        const { agent, classification: c, ownerId } = snapshot;
        const extras: ProblemExtras = {
          workspaceId: req.workspaceId,
          agentId: agent.id,
          agentStatus: c.status,
          disconnectedSeconds: disconnectedSeconds(c),
        };

        const cached = this.#cache.acquire(agent.id);
        const decision = decide({
          classification: c,
          cached: cached === undefined ? 'none' : cached.conn.target.address === agent.address ? 'matching' : 'stale',
          remembered: this.#dialer.recall(agent),
          disconnectGraceMs: this.#config.disconnectGraceMs,
        });
        if (decision.kind === 'reuse' && cached) {
          return this.#counted({ workspaceId: req.workspaceId, ownerId, agent, classification: c, lease: cached, cached: true, degraded: false });
        }
        cached?.release();
        if (decision.kind !== 'reuse' && decision.evict) this.#cache.evict(agent.id);
        if (decision.kind === 'refuse') {
          const retry = decision.retryAfterSeconds === undefined ? {} : { retryAfter: decision.retryAfterSeconds };
          throw new ApiError(decision.code, decision.detail, { ...extras, ...retry });
        }

        dials += 1;
        const lease = await this.#dialer.dial(req, agent, extras, remaining());
        // Contract §5 step 11: the agent may have been replaced while we dialed.
        let stillCurrent: boolean;
        try {
          stillCurrent = lease !== undefined && (await this.#fresh.stillCurrent(req, agent.id, remaining()));
        } catch (error) {
          lease?.release();
          throw error;
        }
        if (lease && stillCurrent) return this.#counted({ workspaceId: req.workspaceId, ownerId, agent, classification: c, lease, cached: false, degraded: false });
        if (lease) {
          lease.markBroken();
          lease.release();
          req.log.info({ workspaceId: req.workspaceId, agentId: agent.id }, 'the agent was replaced while dialing; starting over');
        }
        if (dials >= 2 || remaining() <= 0) {
          throw new ApiError('WORKSPACE_CHANGED', 'the workspace changed during both dials of this call', {
            workspaceId: req.workspaceId,
          });
        }
      }
    } catch (error) {
      this.#metrics.connTotal.inc({ code: error instanceof CallerGone ? 'client_closed' : error instanceof ApiError ? error.code : 'INTERNAL' });
      throw error;
    }
  }

  #counted(success: GateSuccess): GateSuccess {
    this.#metrics.connTotal.inc({ code: 'ok' });
    return success;
  }

  /** The database cannot be read: a live cached connection to the agent last read still serves (contract §5 step 9). */
  #degraded(req: GateRequest, unreadable: DatabaseUnreadable): GateSuccess {
    const success = this.#snapshots.serve(req, (agentId) => this.#cache.acquire(agentId));
    if (!success) throw databaseUnavailable(req.workspaceId);
    this.#metrics.degradedAnswers.inc();
    req.log.warn(
      { workspaceId: req.workspaceId, agentId: success.agent.id, err: (unreadable.cause as Error).message },
      'database unreadable; serving the cached connection',
    );
    return success;
  }

  /** Applies a state transition from this or another replica. */
  handleEvent(event: GateEvent): void {
    switch (event.kind) {
      case 'agent_disconnected':
        if (this.#cache.evict(event.agentId)) this.#logger.info({ agentId: event.agentId }, 'closed the connection of an agent that said goodbye');
        break;
      case 'agent_connected':
      case 'agent_reconnected':
        this.#dialer.forget(event.agentId);
        break;
      case 'build_created':
      case 'workspace_deleted': {
        // A build's agents are not replaced by that build: its notice, arriving (or echoed back
        // to this replica) after one of them was dialed, must not close that connection.
        const n = this.#cache.evictWorkspace(
          event.workspaceId,
          event.kind === 'build_created' ? (conn) => conn.target.buildId === event.buildId : undefined,
        );
        if (n > 0) this.#logger.info({ workspaceId: event.workspaceId, connections: n, reason: event.kind }, 'closed connections to replaced agents');
        break;
      }
      case 'token_created':
      case 'token_revoked':
      case 'workspace_owner_changed':
        break;
    }
  }

  async close(): Promise<void> {
    await this.#cache.close();
  }
}
