// The agent's own writes (contract §4.2): heartbeats and goodbyes, timed by the database's clock.
// Each is one statement, so the NOTIFY of a transition commits with the change itself.
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';
import { EVENTS_CHANNEL } from './events.js';
import type { GateEvent } from '../domain/events.js';

type Db = Kysely<Database>;

/**
 * The agent's row, only while its workspace is not deleted: the token's principal may come from
 * a cache that a deletion made straight in the tables (no notification) never cleared, and such
 * a token stops working at once (contract §4.3).
 */
const liveAgent = (agentId: string) => sql`
  workspace_agents a
  join workspace_builds b on b.id = a.build_id
  join workspaces w on w.id = b.workspace_id
  where a.id = ${agentId} and w.deleted_at is null`;

type HeartbeatTransition = 'agent_connected' | 'agent_reconnected' | null;

/**
 * Sets first_connected_at once and last_connected_at to now(). Publishes `agent_connected` on the
 * first heartbeat and `agent_reconnected` on the first one after a goodbye; plain heartbeats
 * publish nothing. Returns the event it published (none for a plain heartbeat), or undefined when
 * the agent row or its workspace is gone.
 */
export async function recordHeartbeat(db: Db, agentId: string, workspaceId: string): Promise<{ event: GateEvent | undefined } | undefined> {
  const { rows } = await sql<{ transition: HeartbeatTransition }>`
    with before as (
      select a.id, a.first_connected_at, a.last_connected_at, a.disconnected_at
        from ${liveAgent(agentId)}
         for update of a
    ), updated as (
      update workspace_agents a
         set first_connected_at = coalesce(a.first_connected_at, now()), last_connected_at = now()
        from before
       where a.id = before.id
      returning case
        when before.first_connected_at is null then 'agent_connected'
        when before.disconnected_at is not null
         and before.disconnected_at >= coalesce(before.last_connected_at, '-infinity') then 'agent_reconnected'
      end as transition
    )
    select transition,
           case when transition is not null then pg_notify(${EVENTS_CHANNEL}, json_build_object(
             'kind', transition, 'workspaceId', ${workspaceId}::uuid, 'agentId', ${agentId}::uuid)::text) end
      from updated`.execute(db);
  if (rows.length === 0) return undefined;
  const transition = rows[0]?.transition ?? null;
  return { event: transition === null ? undefined : { kind: transition, workspaceId, agentId } };
}

/**
 * Sets disconnected_at to now() (a graceful goodbye) and publishes `agent_disconnected`; returns
 * that event, or undefined when the agent row or its workspace is gone.
 */
export async function recordGoodbye(db: Db, agentId: string, workspaceId: string): Promise<GateEvent | undefined> {
  const { rows } = await sql<{ id: string }>`
    with updated as (
      update workspace_agents set disconnected_at = now()
       where id = (select a.id from ${liveAgent(agentId)})
      returning id
    )
    select id, pg_notify(${EVENTS_CHANNEL}, json_build_object(
             'kind', 'agent_disconnected', 'workspaceId', ${workspaceId}::uuid, 'agentId', id)::text)
      from updated`.execute(db);
  return rows.length > 0 ? { kind: 'agent_disconnected', workspaceId, agentId } : undefined;
}
