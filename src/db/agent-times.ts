// The times of agents named by id, with the database's clock, in one round trip: what the
// watch over running MCP calls classifies (the per-call read stays the gate's own).
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import { agentTimes, type AgentTimesRow } from './workspaces-repo.js';
import type { AgentTimes } from '../domain/agent.js';

export interface AgentTimesRead {
  nowMs: number;
  /** By agent id; an agent whose row is gone is absent. */
  agents: Map<string, AgentTimes>;
}

export async function readAgentTimes(db: Kysely<Database>, agentIds: readonly string[]): Promise<AgentTimesRead> {
  const { rows } = await sql<AgentTimesRow & { id: string | null; now_ms: number }>`
    select (extract(epoch from now()) * 1000)::float8 as now_ms, a.id,
           (extract(epoch from a.created_at) * 1000)::float8 as created_ms,
           (extract(epoch from a.first_connected_at) * 1000)::float8 as first_connected_ms,
           (extract(epoch from a.last_connected_at) * 1000)::float8 as last_connected_ms,
           (extract(epoch from a.disconnected_at) * 1000)::float8 as disconnected_ms,
           a.connection_timeout_seconds
      from (select 1) as clock
      left join workspace_agents a on a.id = any(${[...agentIds]}::uuid[])`.execute(db);
  const agents = new Map<string, AgentTimes>();
  for (const row of rows) if (row.id !== null) agents.set(row.id, agentTimes(row));
  return { nowMs: rows[0]!.now_ms, agents };
}
