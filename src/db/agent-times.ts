// The agents named by id, read fresh in one round trip with the database's clock: their times,
// and whether each is still its workspace's current agent (the workspace not deleted, its
// latest build a start, the agent of that build). What the watch over running MCP calls
// decides on; the per-call read stays the gate's own.
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import { AGENT_TIMES_SQL, agentTimes, type AgentTimesRow } from './workspaces-repo.js';
import type { AgentTimes } from '../domain/agent.js';

export interface AgentNow {
  times: AgentTimes;
  current: boolean;
}

export interface AgentTimesRead {
  nowMs: number;
  /** By agent id; an agent whose row is gone is absent. */
  agents: Map<string, AgentNow>;
}

export async function readAgentTimes(db: Kysely<Database>, agentIds: readonly string[]): Promise<AgentTimesRead> {
  const { rows } = await sql<AgentTimesRow & { id: string | null; now_ms: number; current: boolean }>`
    select (extract(epoch from now()) * 1000)::float8 as now_ms, a.id, ${AGENT_TIMES_SQL},
           coalesce(w.deleted_at is null and b.transition = 'start'
                    and b.build_number = (select max(build_number) from workspace_builds where workspace_id = b.workspace_id),
                    false) as current
      from (select 1) as clock
      left join workspace_agents a on a.id in (select unnest(${[...agentIds]}::uuid[]))
      left join workspace_builds b on b.id = a.build_id
      left join workspaces w on w.id = b.workspace_id`.execute(db);
  const agents = new Map<string, AgentNow>();
  for (const row of rows) if (row.id !== null) agents.set(row.id, { times: agentTimes(row), current: row.current });
  return { nowMs: rows[0]!.now_ms, agents };
}
