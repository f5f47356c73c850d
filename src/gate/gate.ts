// The decision flow of every `conn` call (SPEC section 5): one fresh read, strong signals
// answered at once, weak ones confirmed by a dial, cached connections reused, dials shared and
// bounded, failures remembered, rebuilds noticed, and a database outage survived on a live
// cached connection.
import { LRUCache } from 'lru-cache';
import { SpanKind, trace, type Context, type Span } from '@opentelemetry/api';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { BoundedPool } from '../db/bounded-pool.js';
import type { GateEvent } from '../domain/events.js';
import { isDatabaseUnavailable } from '../db/failures.js';
import { DatabaseTimeoutError } from '../db/bounded-pool.js';
import { CurrentAgentReads, readCurrentAgent, type CurrentAgent } from '../db/gate-read.js';
import { ApiError, type ProblemExtras } from '../domain/errors.js';
import type { Metrics } from '../metrics.js';
import { FAILURE_API_CODES, failureAnswer } from '../domain/failure-codes.js';
import type { GateSigningKey } from '../auth/gate-signing-key.js';
import { classifyAgent, disconnectedSeconds } from './classify.js';
import type { Classification } from '../domain/agent.js';
import { ConnCache, type CachedConnections, type Lease } from './conn-cache.js';
import { dialAgent, DialFailure } from './dial.js';
import { FailedDials } from './failed-dials.js';
import { connectionPolicy, type ConnectionPolicy } from './agent-connection.js';
import { decide, type RememberedFailure } from './decide.js';
import { CallerGone, SharedDials, TooManyWaiters, WaitExpired } from './shared-dials.js';
import { ATTR, TRACING_OFF, endSpan, failureOutcome, type Tracing } from '../tracing/tracing.js';

export { CallerGone };

export interface GateRequest {
  workspaceId: string;
  agentName?: string | undefined;
  /** The owner a conn token is confined to, or null. */
  ownerScope: string | null;
  /** Aborted (with CallerGone) when the caller goes away. */
  signal: AbortSignal;
  log: FastifyBaseLogger;
  /**
   * When the call began (performance.now() time; its token check included). The whole call is
   * bounded by the dial bound plus twice the database bound from then (SPEC 5 step 9).
   */
  startedAt?: number;
  /**
   * The trace the call belongs to (the request's server span) when tracing is on: the gate's
   * spans are made under it. Null or absent: none is made.
   */
  trace?: Context | null | undefined;
}

export interface GateSuccess {
  workspaceId: string;
  /** The workspace's owner, as read (what is kept from the call may be shown to that owner only). */
  ownerId: string;
  /** The row read for this call (for a degraded answer, the last one read). */
  agent: CurrentAgent;
  classification: Classification;
  /** The caller must release it when done with the connection. */
  lease: Lease;
  /** No dial was made for this call. */
  cached: boolean;
  /** Served on a cached connection because the database could not be read. */
  degraded: boolean;
}

export interface AgentStatusRead {
  agent: CurrentAgent;
  classification: Classification;
}

interface Snapshot {
  ownerId: string;
  agent: CurrentAgent;
  classification: Classification;
}

type Evaluated = { kind: 'fresh'; snapshot: Snapshot } | { kind: 'degraded'; success: GateSuccess };

export interface GateOptions {
  pool: BoundedPool;
  config: Config;
  metrics: Metrics;
  logger: FastifyBaseLogger;
  /** This process's signing key: every request to an agent carries its signature. */
  signingKey: GateSigningKey;
  tracing?: Tracing | undefined;
}

export class Gate {
  readonly #cache: ConnCache;
  readonly signingKey: GateSigningKey;
  /**
   * A dial's value is its own lease on the connection it cached; each waiter is handed a lease
   * of its own at once, so an eviction between the dial and the waiter cannot close it first.
   */
  readonly #dials = new SharedDials<Lease>({ handOut: (lease) => lease.share(), settled: (lease) => lease.release() });
  readonly #failed: FailedDials;
  readonly #connectionPolicy: ConnectionPolicy;
  /** The last row read per (workspace, agent name): what a degraded answer reports. */
  readonly #lastReads: LRUCache<string, Snapshot>;
  readonly #pool: BoundedPool;
  /** The fresh reads of every call; those that arrive together share a query. */
  readonly #reads: CurrentAgentReads;
  readonly #config: Config;
  readonly #metrics: Metrics;
  readonly #logger: FastifyBaseLogger;
  readonly #tracing: Tracing;

  constructor(options: GateOptions) {
    const { config, metrics } = options;
    this.#pool = options.pool;
    this.#reads = new CurrentAgentReads(options.pool);
    this.signingKey = options.signingKey;
    this.#config = config;
    this.#metrics = metrics;
    this.#logger = options.logger;
    this.#tracing = options.tracing ?? TRACING_OFF;
    this.#failed = new FailedDials(config.dialBackoffMs);
    this.#connectionPolicy = connectionPolicy(config);
    this.#lastReads = new LRUCache({ max: Math.max(1000, config.maxConns) });
    this.#cache = new ConnCache({
      max: config.maxConns,
      idleMs: config.connIdleMs,
      onSizeChange: (size) => metrics.connections.set(size),
    });
  }

  /** The cached connections, for observation (metrics, tests); only the gate uses or evicts them. */
  get connections(): CachedConnections {
    return this.#cache;
  }

  /** Status snapshot for `GET .../agent`: one read, no dial, no side effect. */
  async status(req: Omit<GateRequest, 'signal' | 'log'>): Promise<AgentStatusRead> {
    try {
      const { agent, classification } = await this.#read(req);
      return { agent, classification };
    } catch (error) {
      if (!(error instanceof DatabaseUnreadable)) throw error;
      throw databaseUnavailable(req.workspaceId);
    }
  }

  /** Ensures a live connection to the workspace's current agent; see SPEC section 5. */
  connect(req: GateRequest): Promise<GateSuccess> {
    if (!this.#tracing.enabled || !req.trace) return this.#connect(req);
    return this.#tracedConnect(req, req.trace);
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

  async #connect(req: GateRequest): Promise<GateSuccess> {
    const deadline = (req.startedAt ?? performance.now()) + this.#config.dialTimeoutMs + 2 * this.#config.dbTimeoutMs;
    const remaining = () => deadline - performance.now();
    let dials = 0;
    for (;;) {
      const evaluated = await this.#evaluate(req, remaining());
      if (evaluated.kind === 'degraded') return evaluated.success;
      const { agent, classification: c, ownerId } = evaluated.snapshot;
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
        remembered: remembered(this.#failed.recall(agent.id, agent.lastConnectedAt)),
        disconnectGraceMs: this.#config.disconnectGraceMs,
      });
      if (decision.kind === 'reuse' && cached) {
        return { workspaceId: req.workspaceId, ownerId, agent, classification: c, lease: cached, cached: true, degraded: false };
      }
      cached?.release();
      if (decision.kind !== 'reuse' && decision.evict) this.#cache.evict(agent.id);
      if (decision.kind === 'refuse') {
        const retry = decision.retryAfterSeconds === undefined ? {} : { retryAfter: decision.retryAfterSeconds };
        throw new ApiError(decision.code, decision.detail, { ...extras, ...retry });
      }

      dials += 1;
      const lease = await this.#dial(req, agent, extras, remaining());
      // SPEC 5 step 11: the agent may have been replaced while we dialed.
      let stillCurrent: boolean;
      try {
        stillCurrent = lease !== undefined && (await this.#stillCurrent(req, agent.id, remaining()));
      } catch (error) {
        lease?.release();
        throw error;
      }
      if (lease && stillCurrent) return { workspaceId: req.workspaceId, ownerId, agent, classification: c, lease, cached: false, degraded: false };
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
  }

  /** Applies a state transition from this or another replica. */
  handleEvent(event: GateEvent): void {
    switch (event.kind) {
      case 'agent_disconnected':
        if (this.#cache.evict(event.agentId)) this.#logger.info({ agentId: event.agentId }, 'closed the connection of an agent that said goodbye');
        break;
      case 'agent_connected':
      case 'agent_reconnected':
        this.#failed.forget(event.agentId);
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
        break;
    }
  }

  async close(): Promise<void> {
    await this.#cache.close();
  }

  /** One more read after a dial; a database failure or an exhausted budget keeps the dial. */
  async #stillCurrent(req: GateRequest, agentId: string, budgetMs: number): Promise<boolean> {
    if (budgetMs < this.#pool.minBudgetMs) return true;
    const span = req.trace ? this.#readSpan(req.trace, true) : undefined;
    try {
      span?.setAttribute(DB_BATCH_SIZE, 1);
      const again = await readCurrentAgent(this.#pool, req.workspaceId, req.agentName, budgetMs);
      if (span) endRead(span, again.kind);
      return again.kind === 'agent' && again.agent.id === agentId;
    } catch (error) {
      if (span) endReadFailed(span, error);
      if (!isDatabaseUnavailable(error)) throw error;
      // The dial just succeeded against the agent we read; keep it.
      return true;
    }
  }

  async #read(req: Omit<GateRequest, 'signal' | 'log'>, budgetMs = this.#config.dbTimeoutMs): Promise<Snapshot> {
    let read;
    const span = req.trace ? this.#readSpan(req.trace, false) : undefined;
    try {
      if (budgetMs < this.#pool.minBudgetMs) throw new DatabaseTimeoutError('no time left in this call for the database');
      read = await this.#reads.read(req.workspaceId, req.agentName, budgetMs, span);
    } catch (error) {
      if (span) endReadFailed(span, error);
      if (!isDatabaseUnavailable(error)) throw error;
      throw new DatabaseUnreadable(error);
    }
    if (span) endRead(span, read.kind);
    const where = { workspaceId: req.workspaceId };
    const key = readKey(req);
    if (read.kind !== 'agent' || this.#lastReads.get(key)?.agent.id !== read.agent.id) {
      // The database contradicts what this key last read (the workspace is gone or stopped, or
      // has another agent, perhaps written by a control plane that sends no notification):
      // neither that snapshot nor its connection may serve a degraded answer any more.
      this.#forget(key);
    }
    if (read.kind === 'no_workspace' || (req.ownerScope !== null && read.ownerId !== req.ownerScope)) {
      throw new ApiError('WORKSPACE_NOT_FOUND', 'no such workspace', where);
    }
    if (read.kind === 'no_agent') {
      throw new ApiError('WORKSPACE_HAS_NO_AGENT', 'the latest build of the workspace has no agent', where);
    }
    if (read.kind === 'agent_not_found') {
      throw new ApiError('AGENT_NOT_FOUND', `no current agent is named "${req.agentName ?? ''}"`, where);
    }
    const snapshot: Snapshot = {
      ownerId: read.ownerId,
      agent: read.agent,
      classification: classifyAgent(read.agent, read.nowMs, this.#config.inactiveTimeoutMs),
    };
    this.#lastReads.set(key, snapshot);
    return snapshot;
  }

  /**
   * An `agentgate.db.read` span: one per call, from its arrival to its answer, so a read that
   * waited for a batch shows its wait (CurrentAgentReads adds the batch size and when it was sent).
   */
  #readSpan(parent: Context, recheck: boolean): Span {
    return this.#tracing.tracer.startSpan(
      'agentgate.db.read',
      { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql', 'agentgate.db.recheck': recheck } },
      parent,
    );
  }

  /** Drops the snapshot of a key and closes the connection to the agent it named. */
  #forget(key: string): void {
    const last = this.#lastReads.get(key);
    if (!last) return;
    this.#lastReads.delete(key);
    if (this.#cache.evict(last.agent.id)) this.#logger.info({ agentId: last.agent.id }, 'closed the connection of an agent that is no longer current');
  }

  /** The fresh read; when the database cannot be read, a live cached connection still serves. */
  async #evaluate(req: GateRequest, budgetMs: number): Promise<Evaluated> {
    try {
      return { kind: 'fresh', snapshot: await this.#read(req, Math.min(budgetMs, this.#config.dbTimeoutMs)) };
    } catch (error) {
      if (!(error instanceof DatabaseUnreadable)) throw error;
      const last = this.#lastReads.get(readKey(req));
      const visible = last && (req.ownerScope === null || last.ownerId === req.ownerScope);
      const lease = visible ? this.#cache.acquire(last.agent.id) : undefined;
      if (last && lease) {
        this.#metrics.degradedAnswers.inc();
        req.log.warn(
          { workspaceId: req.workspaceId, agentId: last.agent.id, err: (error.cause as Error).message },
          'database unreadable; serving the cached connection',
        );
        return {
          kind: 'degraded',
          success: {
            workspaceId: req.workspaceId,
            ownerId: last.ownerId,
            agent: last.agent,
            classification: last.classification,
            lease,
            cached: true,
            degraded: true,
          },
        };
      }
      throw databaseUnavailable(req.workspaceId);
    }
  }

  /**
   * Joins or starts the agent's dial; a lease on its connection, or undefined when the dial
   * joined was to another address than the one this call read: the caller then starts over.
   */
  async #dial(req: GateRequest, agent: CurrentAgent, extras: ProblemExtras, budgetMs: number): Promise<Lease | undefined> {
    // One span per call that needed a dial, started or joined; the dial's own health probe
    // carries the trace of the call that started it.
    const span = req.trace
      ? this.#tracing.tracer.startSpan('agentgate.dial', { kind: SpanKind.CLIENT, attributes: { [ATTR.agentId]: agent.id } }, req.trace)
      : undefined;
    // The dial is shared: it always gets its full bound, never the remainder of whichever call
    // started it; each call stops waiting at its own deadline instead.
    const timeoutMs = this.#config.dialTimeoutMs;
    let lease: Lease;
    try {
      let joined: boolean;
      ({ value: lease, joined } = await this.#dials.join(agent.id, req.signal, budgetMs, (signal) => this.#dialAndCache(req, agent, signal, timeoutMs, span)));
      span?.setAttribute(DIAL_JOINED, joined);
    } catch (error) {
      const answer = dialAnswer(error, extras);
      if (span) {
        span.setAttribute(DIAL_RESULT, dialResult(error));
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

  async #dialAndCache(req: GateRequest, agent: CurrentAgent, signal: AbortSignal, timeoutMs: number, span: Span | undefined): Promise<Lease> {
    const started = performance.now();
    const log = req.log.child({ workspaceId: req.workspaceId, agentId: agent.id });
    this.#metrics.dialsInFlight.inc();
    try {
      const conn = await dialAgent(
        { agentId: agent.id, workspaceId: req.workspaceId, buildId: agent.buildId, address: agent.address },
        { ...this.#connectionPolicy, timeoutMs, signingKey: this.signingKey, signal, trace: span && this.#tracing.headersFor(span) },
      );
      this.#metrics.dialSeconds.observe({ result: 'ok' }, (performance.now() - started) / 1000);
      this.#failed.forget(agent.id);
      log.info({ dialMs: Math.round(conn.dialMs) }, 'dialed the agent');
      return this.#cache.add(conn);
    } catch (error) {
      const outcome = error instanceof DialFailure ? error.outcome : 'unreachable';
      const code = error instanceof DialFailure ? FAILURE_API_CODES[error.code] : FAILURE_API_CODES.AGENTGATE_DIAL_UNREACHABLE;
      this.#metrics.dialSeconds.observe({ result: code === null ? 'client_closed' : outcome }, (performance.now() - started) / 1000);
      if (code === null) {
        log.info({ code: 'client_closed' }, 'dial cancelled: every caller left');
      } else {
        this.#failed.remember(agent.id, agent.lastConnectedAt, code, (error as Error).message);
        log.warn({ code, err: (error as Error).message }, 'dial failed');
      }
      throw error;
    } finally {
      this.#metrics.dialsInFlight.dec();
    }
  }
}

/**
 * What a failed wait for a dial answers: the call's own budget ran out (not the agent's failure,
 * so not remembered), too many callers wait already (shed at once: OVERLOADED, since nothing is
 * known of the agent yet), the dial failed, or the caller left.
 */
function dialAnswer(error: unknown, extras: ProblemExtras): unknown {
  if (error instanceof CallerGone) return error;
  if (error instanceof WaitExpired) return failureAnswer(error.code, error.message, extras);
  if (error instanceof TooManyWaiters) return failureAnswer(error.code, error.message, { ...extras, retryAfter: 1 });
  if (error instanceof DialFailure) {
    const code = FAILURE_API_CODES[error.code];
    // A dial is cancelled only once every caller has left: this one too.
    if (code === null) return new CallerGone('the caller went away');
    return new ApiError(code, error.message, extras);
  }
  return error;
}

const DIAL_RESULT = 'agentgate.dial.result';
const DIAL_JOINED = 'agentgate.dial.joined';
const DB_BATCH_SIZE = 'agentgate.db.batch.size';

/** The dial span's result, in the words of agentgate_dial_seconds{result} (and this call's own). */
function dialResult(error: unknown): string {
  if (error instanceof CallerGone) return 'client_closed';
  if (error instanceof WaitExpired) return 'wait_expired';
  if (error instanceof TooManyWaiters) return 'shed';
  if (error instanceof DialFailure) return error.outcome === 'cancelled' ? 'client_closed' : error.outcome;
  return 'error';
}

function endRead(span: Span, kind: string): void {
  span.setAttribute('agentgate.db.result', kind);
  endSpan(span, { code: 'ok' });
}

function endReadFailed(span: Span, error: unknown): void {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') span.setAttribute('error.type', code);
  endSpan(span, isDatabaseUnavailable(error) ? { code: 'DATABASE_UNAVAILABLE', status: 503 } : failureOutcome(error));
}

const databaseUnavailable = (workspaceId: string) =>
  new ApiError('DATABASE_UNAVAILABLE', 'the database could not be read in time', { workspaceId, retryAfter: 1 });

class DatabaseUnreadable extends Error {
  constructor(cause: unknown) {
    super('database unreadable', { cause });
  }
}

const remembered = (recalled: ReturnType<FailedDials['recall']>): RememberedFailure | undefined =>
  recalled && { code: recalled.failure.code, detail: recalled.failure.detail, retryAfterSeconds: recalled.retryAfterSeconds };

const readKey = (req: { workspaceId: string; agentName?: string | undefined }) => `${req.workspaceId}\u0000${req.agentName ?? ''}`;
