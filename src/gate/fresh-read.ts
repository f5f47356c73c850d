// The gate's fresh read (contract §5 step 1) and the re-read after a dial (step 11): what the
// database says of the selected agent, classified, or the refusal the read itself decides
// (no workspace, no agent). The reads are passed in, so the gate runs on any source of rows.
import { SpanKind, type Context, type Span } from '@opentelemetry/api';
import type { AgentRead } from '../db/gate-read.js';
import { isDatabaseUnavailable } from '../db/failures.js';
import { ApiError } from '../domain/errors.js';
import { DatabaseTimeout } from '../domain/failures.js';
import { childSpan, endSpan, failureOutcome, type Tracing } from '../tracing/tracing.js';
import { classifyAgent } from './classify.js';
import type { StatusRequest, Snapshot } from './gate-types.js';
import { readKey, type Snapshots } from './snapshots.js';

/** Where the gate's rows come from. */
export interface GateReads {
  /** The least budget worth sending a query with. */
  readonly minBudgetMs: number;
  /** A call's read; reads that arrive together may share a query (and report it on `span`). */
  read(workspaceId: string, agentName: string | undefined, budgetMs: number, span?: Span): Promise<AgentRead>;
  /** One more read after a dial, on its own. */
  recheck(workspaceId: string, agentName: string | undefined, budgetMs: number): Promise<AgentRead>;
}

/** The database could not be read in time: degraded mode decides what follows. */
export class DatabaseUnreadable extends Error {
  override name = 'DatabaseUnreadable';
  constructor(cause: unknown) {
    super('database unreadable', { cause });
  }
}

export const databaseUnavailable = (workspaceId: string) =>
  new ApiError('DATABASE_UNAVAILABLE', 'the database could not be read in time', { workspaceId, retryAfter: 1 });

export interface FreshReadOptions {
  reads: GateReads;
  snapshots: Snapshots;
  inactiveTimeoutMs: number;
  dbTimeoutMs: number;
  tracing: Tracing;
}

export class FreshRead {
  constructor(private readonly options: FreshReadOptions) {}

  /**
   * The selected agent, read now and classified; throws the refusal a read decides, or
   * DatabaseUnreadable.
   */
  async read(req: StatusRequest, budgetMs = this.options.dbTimeoutMs): Promise<Snapshot> {
    const { reads, snapshots } = this.options;
    let read: AgentRead;
    const span = this.#span(req.trace, false);
    try {
      if (budgetMs < reads.minBudgetMs) throw new DatabaseTimeout('no time left in this call for the database');
      read = await reads.read(req.workspaceId, req.agentName, budgetMs, span);
    } catch (error) {
      if (span) endReadFailed(span, error);
      if (!isDatabaseUnavailable(error)) throw error;
      throw new DatabaseUnreadable(error);
    }
    if (span) endRead(span, read.kind);
    const where = { workspaceId: req.workspaceId };
    const key = readKey(req);
    snapshots.contradict(key, read.kind === 'agent' ? read.agent.id : undefined);
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
      classification: classifyAgent(read.agent, read.nowMs, this.options.inactiveTimeoutMs),
    };
    snapshots.remember(key, snapshot);
    return snapshot;
  }

  /** Whether `agentId` is still the current agent; a database failure or no time left keeps the dial. */
  async stillCurrent(req: StatusRequest, agentId: string, budgetMs: number): Promise<boolean> {
    const { reads } = this.options;
    if (budgetMs < reads.minBudgetMs) return true;
    const span = this.#span(req.trace, true);
    try {
      span?.setAttribute(DB_BATCH_SIZE, 1);
      const again = await reads.recheck(req.workspaceId, req.agentName, budgetMs);
      if (span) endRead(span, again.kind);
      return again.kind === 'agent' && again.agent.id === agentId;
    } catch (error) {
      if (span) endReadFailed(span, error);
      if (!isDatabaseUnavailable(error)) throw error;
      // The dial just succeeded against the agent we read; keep it.
      return true;
    }
  }

  /**
   * An `agentgate.db.read` span: one per call, from its arrival to its answer, so a read that
   * waited for a batch shows its wait (the batched read adds the batch size and when it was sent).
   */
  #span(parent: Context | null | undefined, recheck: boolean): Span | undefined {
    const span = childSpan(this.options.tracing, parent, 'agentgate.db.read', SpanKind.CLIENT);
    span?.setAttributes({ 'db.system.name': 'postgresql', 'agentgate.db.recheck': recheck });
    return span;
  }
}

const DB_BATCH_SIZE = 'agentgate.db.batch.size';

function endRead(span: Span, kind: string): void {
  span.setAttribute('agentgate.db.result', kind);
  endSpan(span, { code: 'ok' });
}

function endReadFailed(span: Span, error: unknown): void {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') span.setAttribute('error.type', code);
  endSpan(span, isDatabaseUnavailable(error) ? { code: 'DATABASE_UNAVAILABLE', status: 503 } : failureOutcome(error));
}
