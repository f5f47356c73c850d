// Whether what an open WebSocket tunnel rests on still holds, read fresh in one round trip:
// its token unrevoked, and its agent the current agent of a live, started workspace that has
// not said goodbye. Used when notifications may have been lost.
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

export interface TunnelAuthorityRead {
  tokenLive: boolean;
  agentCurrent: boolean;
}

/** `tokenId` null: a token that cannot be revoked (the configured admin token). */
export async function readTunnelAuthority(db: Kysely<Database>, tokenId: string | null, agentId: string): Promise<TunnelAuthorityRead> {
  const { rows } = await sql<{ token_live: boolean; agent_current: boolean }>`
    select (${tokenId}::uuid is null or exists (
              select 1 from api_tokens where id = ${tokenId}::uuid and revoked_at is null)) as token_live,
           exists (
             select 1
               from workspace_agents a
               join workspace_builds b on b.id = a.build_id
               join workspaces w on w.id = b.workspace_id and w.deleted_at is null
              where a.id = ${agentId}::uuid
                and b.transition = 'start'
                and b.build_number = (select max(build_number) from workspace_builds where workspace_id = w.id)
                and not (a.disconnected_at is not null and a.disconnected_at >= coalesce(a.last_connected_at, a.disconnected_at))
           ) as agent_current`.execute(db);
  const row = rows[0];
  return { tokenLive: row?.token_live ?? false, agentCurrent: row?.agent_current ?? false };
}
