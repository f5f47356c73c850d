// The gate's per-call read (SPEC 5 step 1): in one round trip, the workspace (existence, owner),
// its latest build, the selected current agent with fresh timestamps, and the database's now().
// A prepared statement: parsed and planned once per connection.
import type { BoundedPool } from './bounded-pool.js';
import { agentTimes, type AgentTimesRow } from './workspaces-repo.js';
import type { AgentTimes } from '../domain/agent.js';

const READ_CURRENT_AGENT = `
select w.owner_id,
       (extract(epoch from now()) * 1000)::float8 as now_ms,
       b.id as build_id, b.transition,
       exists (select 1 from workspace_agents x where x.build_id = b.id) as has_agents,
       a.id as agent_id, a.name as agent_name, a.address,
       (extract(epoch from a.created_at) * 1000)::float8 as created_ms,
       (extract(epoch from a.first_connected_at) * 1000)::float8 as first_connected_ms,
       (extract(epoch from a.last_connected_at) * 1000)::float8 as last_connected_ms,
       (extract(epoch from a.disconnected_at) * 1000)::float8 as disconnected_ms,
       a.connection_timeout_seconds
  from workspaces w
  left join lateral (
    select id, transition from workspace_builds
     where workspace_id = w.id order by build_number desc limit 1
  ) b on true
  left join lateral (
    select * from workspace_agents
     where build_id = b.id and ($2::text is null or name = $2)
     order by display_order, name collate "C" limit 1
  ) a on b.transition = 'start'
 where w.id = $1 and w.deleted_at is null`;

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
  const rows = await pool.queryNamed<Row>('agentgate_read_current_agent', READ_CURRENT_AGENT, [workspaceId, agentName ?? null], budgetMs);
  const row = rows[0];
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
