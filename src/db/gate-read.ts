// The gate's per-call read (contract §5 step 1): in one round trip, the workspace (existence, owner),
// its latest build, the selected current agent with fresh timestamps, and the database's now().
// Prepared statements: parsed and planned once per connection. Reads that arrive together share
// one query (CurrentAgentReads), each still sent after its call arrived.
import type { Span } from '@opentelemetry/api';
import type { BoundedPool } from './bounded-pool.js';
import { DatabaseTimeout } from '../domain/failures.js';
import { agentTimes, type AgentTimesRow } from './workspaces-repo.js';
import type { AgentTimes } from '../domain/agent.js';

// The read for one or many (workspace, agent name) pairs at once; `i` says which pair a row
// answers (a pair whose workspace does not exist, or is deleted, has no row).
const READ_CURRENT_AGENTS = `
select r.i::int4 as i, w.owner_id,
       (extract(epoch from now()) * 1000)::float8 as now_ms,
       b.id as build_id, b.transition,
       exists (select 1 from workspace_agents x where x.build_id = b.id) as has_agents,
       a.id as agent_id, a.name as agent_name, a.address,
       (extract(epoch from a.created_at) * 1000)::float8 as created_ms,
       (extract(epoch from a.first_connected_at) * 1000)::float8 as first_connected_ms,
       (extract(epoch from a.last_connected_at) * 1000)::float8 as last_connected_ms,
       (extract(epoch from a.disconnected_at) * 1000)::float8 as disconnected_ms,
       a.connection_timeout_seconds
  from unnest($1::uuid[], $2::text[]) with ordinality as r(workspace_id, agent_name, i)
  join workspaces w on w.id = r.workspace_id and w.deleted_at is null
  left join lateral (
    select id, transition from workspace_builds
     where workspace_id = w.id order by build_number desc limit 1
  ) b on true
  left join lateral (
    select * from workspace_agents
     where build_id = b.id and (r.agent_name is null or name = r.agent_name)
     order by display_order, name collate "C" limit 1
  ) a on b.transition = 'start'`;

const READ_NAME = 'agentgate_read_current_agents';

interface Row extends Partial<AgentTimesRow> {
  owner_id: string;
  now_ms: number;
  build_id: string | null;
  transition: string | null;
  has_agents: boolean;
  agent_id: string | null;
  agent_name: string | null;
  address: string | null;
}

export interface CurrentAgent extends AgentTimes {
  id: string;
  /** The build the agent belongs to (the workspace's latest). */
  buildId: string;
  name: string;
  address: string;
}

export type AgentRead =
  | { kind: 'no_workspace' }
  | { kind: 'no_agent'; ownerId: string; nowMs: number }
  | { kind: 'agent_not_found'; ownerId: string; nowMs: number }
  | { kind: 'agent'; ownerId: string; nowMs: number; agent: CurrentAgent };

export async function readCurrentAgent(
  pool: BoundedPool,
  workspaceId: string,
  agentName: string | undefined,
  budgetMs?: number,
): Promise<AgentRead> {
  const rows = await pool.queryNamed<Row>(READ_NAME, READ_CURRENT_AGENTS, [[workspaceId], [agentName ?? null]], budgetMs);
  return toRead(rows[0], agentName);
}

function toRead(row: Row | undefined, agentName: string | undefined): AgentRead {
  if (!row) return { kind: 'no_workspace' };
  const base = { ownerId: row.owner_id, nowMs: row.now_ms };
  if (row.build_id === null || row.agent_id === null || row.agent_name === null || row.address === null) {
    const started = row.transition === 'start' && row.has_agents;
    return { kind: agentName !== undefined && started ? 'agent_not_found' : 'no_agent', ...base };
  }
  return {
    kind: 'agent',
    ...base,
    agent: {
      id: row.agent_id,
      buildId: row.build_id,
      name: row.agent_name,
      address: row.address,
      ...agentTimes(row as AgentTimesRow),
    },
  };
}

interface Waiting {
  workspaceId: string;
  agentName: string | undefined;
  /** performance.now() when the first of its callers asked: its budget runs from then. */
  since: number;
  callers: Array<{ resolve: (read: AgentRead) => void; reject: (error: unknown) => void; span: Span | undefined }>;
}

export interface CurrentAgentReadsOptions {
  /** Batches in flight at once; further reads wait for one to return and go in the next. */
  maxInFlight?: number;
  /** Pairs per query. */
  maxBatch?: number;
}

/**
 * Fresh reads of current agents, batched: reads that arrive while a batch is being prepared, or
 * while every batch slot is busy, go together in one `= ANY`-style query, and identical reads
 * (a hot workspace) share one row. Under light load a read goes alone at once (one turn of the
 * event loop later). A read with less than the pool's full budget (the recheck after a dial)
 * is not batched: its bound is its own.
 */
export class CurrentAgentReads {
  readonly #pool: BoundedPool;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  #waiting = new Map<string, Waiting>();
  #inFlight = 0;
  #scheduled = false;

  constructor(pool: BoundedPool, options: CurrentAgentReadsOptions = {}) {
    this.#pool = pool;
    // Fewer slots than pool connections: a batch is cheap, and the rest of the pool stays free
    // for the control plane's writes and the token lookups.
    this.#maxInFlight = options.maxInFlight ?? 4;
    this.#maxBatch = options.maxBatch ?? 256;
  }

  /**
   * `span` (tracing on): this call's read span, told the size of the batch that served it and,
   * as an event, when that batch's query was sent; its owner ends it.
   */
  read(workspaceId: string, agentName: string | undefined, budgetMs = this.#pool.timeoutMs, span?: Span): Promise<AgentRead> {
    if (budgetMs < this.#pool.timeoutMs) {
      span?.setAttribute(BATCH_SIZE, 1);
      return readCurrentAgent(this.#pool, workspaceId, agentName, budgetMs);
    }
    return new Promise((resolve, reject) => {
      const key = agentName === undefined ? workspaceId : `${workspaceId}\u0000${agentName}`;
      let waiting = this.#waiting.get(key);
      if (!waiting) {
        waiting = { workspaceId, agentName, since: performance.now(), callers: [] };
        this.#waiting.set(key, waiting);
      }
      waiting.callers.push({ resolve, reject, span });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight || this.#waiting.size === 0) return;
    this.#scheduled = true;
    // After the I/O phase: every request that arrived in it joins this batch.
    setImmediate(() => {
      this.#scheduled = false;
      this.#send();
    });
  }

  #send(): void {
    if (this.#inFlight >= this.#maxInFlight || this.#waiting.size === 0) return;
    const batch: Waiting[] = [];
    for (const [key, waiting] of this.#waiting) {
      batch.push(waiting);
      this.#waiting.delete(key);
      if (batch.length === this.#maxBatch) break;
    }
    // Each read keeps the budget it arrived with: the batch gets what its oldest member has left.
    // The map keeps arrival order: the first read taken is the oldest.
    const now = performance.now();
    const budget = this.#pool.timeoutMs - (now - batch[0]!.since);
    this.#inFlight += 1;
    this.#query(batch, budget, now)
      .finally(() => {
        this.#inFlight -= 1;
        this.#schedule();
      })
      .catch(() => undefined);
    this.#schedule();
  }

  async #query(batch: Waiting[], budgetMs: number, sentAt: number): Promise<void> {
    try {
      if (budgetMs < this.#pool.minBudgetMs) throw new DatabaseTimeout(`no time left for a database query (${Math.max(0, Math.round(budgetMs))} ms)`);
      const rows = await this.#pool.queryNamed<Row & { i: number }>(
        READ_NAME,
        READ_CURRENT_AGENTS,
        [batch.map((w) => w.workspaceId), batch.map((w) => w.agentName ?? null)],
        budgetMs,
      );
      const byIndex = new Map(rows.map((row) => [row.i, row]));
      batch.forEach((w, index) => {
        const read = toRead(byIndex.get(index + 1), w.agentName);
        for (const caller of w.callers) {
          if (caller.span) noteBatch(caller.span, batch.length, w.callers.length, sentAt);
          caller.resolve(read);
        }
      });
    } catch (error) {
      for (const w of batch) {
        for (const caller of w.callers) {
          if (caller.span) noteBatch(caller.span, batch.length, w.callers.length, sentAt);
          caller.reject(error);
        }
      }
    }
  }
}

const BATCH_SIZE = 'agentgate.db.batch.size';

/**
 * What a traced read learns of the batch that served it: how many (workspace, agent name) pairs
 * the query read, how many calls shared this one's row, and when the query was sent (a
 * performance.now() time, which the SDK takes as such): the span's time before it is the wait.
 */
function noteBatch(span: Span, size: number, sharing: number, sentAt: number): void {
  span.setAttributes({ [BATCH_SIZE]: size, 'agentgate.db.batch.sharing': sharing });
  span.addEvent('agentgate.db.query_sent', undefined, sentAt);
}
