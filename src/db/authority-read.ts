// What work in flight rests on, read fresh in one round trip with the database's clock: for
// each (token, workspace, agent), whether the token is unrevoked, the workspace's owner (none
// when it is deleted), and the agent's times and whether it is still its workspace's current
// agent. What src/gate/in-flight.ts decides on; the per-call read stays the gate's own.
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import { AGENT_TIMES_SQL, agentTimes, type AgentTimesRow } from './workspaces-repo.js';
import type { AgentTimes } from '../domain/agent.js';

export interface AuthorityQuery {
  /** null: a token that cannot be revoked. */
  tokenId: string | null;
  workspaceId: string;
  agentId: string | undefined;
}

export interface AuthorityRow {
  tokenLive: boolean;
  ownerId: string | null;
  /** undefined when no agent was asked for, or its row is gone. */
  agent: { times: AgentTimes; current: boolean } | undefined;
}

export interface AuthorityRead {
  nowMs: number;
  /** In the order asked. */
  rows: AuthorityRow[];
}

interface Row extends AgentTimesRow {
  n: string;
  now_ms: number;
  token_live: boolean;
  owner_id: string | null;
  agent_id: string | null;
  current: boolean;
}

export async function readAuthorities(db: Kysely<Database>, queries: readonly AuthorityQuery[]): Promise<AuthorityRead> {
  const { rows } = await sql<Row>`
    select q.n, (extract(epoch from now()) * 1000)::float8 as now_ms,
           (q.token_id is null or exists (
              select 1 from api_tokens t where t.id = q.token_id and t.revoked_at is null)) as token_live,
           w.owner_id, a.id as agent_id, ${AGENT_TIMES_SQL},
           coalesce(w.id is not null and b.workspace_id = w.id and b.transition = 'start'
                    and b.build_number = (select max(build_number) from workspace_builds where workspace_id = w.id),
                    false) as current
      from unnest(${queries.map((q) => q.tokenId)}::uuid[], ${queries.map((q) => q.workspaceId)}::uuid[],
                  ${queries.map((q) => q.agentId ?? null)}::uuid[]) with ordinality as q(token_id, workspace_id, agent_id, n)
      left join workspaces w on w.id = q.workspace_id and w.deleted_at is null
      left join workspace_agents a on a.id = q.agent_id
      left join workspace_builds b on b.id = a.build_id
     order by q.n`.execute(db);
  return {
    nowMs: rows[0]?.now_ms ?? 0,
    rows: rows.map((row) => ({
      tokenLive: row.token_live,
      ownerId: row.owner_id,
      agent: row.agent_id === null ? undefined : { times: agentTimes(row), current: row.current },
    })),
  };
}
