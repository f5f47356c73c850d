// Workspaces, builds and their agents: the control plane's writes and reads.
// Plain functions over a Kysely handle, so each can run inside a caller's transaction.
import { sql, type Kysely } from 'kysely';
import type { Database, Transition } from './schema.js';
import { publishEvent } from './events.js';
import { hashToken, mintToken } from '../domain/tokens.js';
import type { AgentTimes } from '../domain/agent.js';
import type { GateEvent } from '../domain/events.js';

type Db = Kysely<Database>;

/** Agent timestamps as epoch milliseconds with microsecond fractions (see gate/classify.ts). */
export const AGENT_TIMES_SQL = sql`
  (extract(epoch from a.created_at) * 1000)::float8 as created_ms,
  (extract(epoch from a.first_connected_at) * 1000)::float8 as first_connected_ms,
  (extract(epoch from a.last_connected_at) * 1000)::float8 as last_connected_ms,
  (extract(epoch from a.disconnected_at) * 1000)::float8 as disconnected_ms,
  a.connection_timeout_seconds`;

export interface AgentTimesRow {
  created_ms: number;
  first_connected_ms: number | null;
  last_connected_ms: number | null;
  disconnected_ms: number | null;
  connection_timeout_seconds: number;
}

export function agentTimes(row: AgentTimesRow): AgentTimes {
  return {
    createdAt: row.created_ms,
    firstConnectedAt: row.first_connected_ms,
    lastConnectedAt: row.last_connected_ms,
    disconnectedAt: row.disconnected_ms,
    connectionTimeoutSeconds: row.connection_timeout_seconds,
  };
}

export interface WorkspaceInput {
  id: string;
  ownerId: string;
  name: string;
}

/**
 * Creates or updates a workspace; null when the id belongs to a deleted one (ids are not reused).
 * A new owner ends what the old owner's tokens have in flight on it, on every replica: the event
 * is published in the same transaction, and returned for this replica to apply.
 */
export async function upsertWorkspace(db: Db, input: WorkspaceInput): Promise<{ created: boolean; event: GateEvent | undefined } | null> {
  return db.transaction().execute(async (trx) => {
    const { rows: before } = await sql<{ owner_id: string }>`
      select owner_id from workspaces where id = ${input.id} and deleted_at is null for update`.execute(trx);
    const { rows } = await sql<{ created: boolean }>`
      insert into workspaces (id, owner_id, name) values (${input.id}, ${input.ownerId}, ${input.name})
      on conflict (id) do update set owner_id = excluded.owner_id, name = excluded.name
        where workspaces.deleted_at is null
      returning (xmax = 0) as created`.execute(trx);
    const row = rows[0];
    if (!row) return null;
    const previous = before[0]?.owner_id;
    let event: GateEvent | undefined;
    if (previous !== undefined && previous !== input.ownerId) {
      event = { kind: 'workspace_owner_changed', workspaceId: input.id, ownerId: input.ownerId };
      await publishEvent(trx, event);
    }
    return { created: row.created, event };
  });
}

export interface WorkspaceView {
  id: string;
  ownerId: string;
  name: string;
  createdAt: Date;
  /** The database's clock at the read, epoch milliseconds. */
  nowMs: number;
  latestBuild: { id: string; buildNumber: number; transition: Transition; createdAt: Date } | null;
  agents: Array<
    AgentTimes & { id: string; name: string; address: string; displayOrder: number }
  >;
}

interface WorkspaceRow {
  id: string;
  owner_id: string;
  name: string;
  created_at: Date;
  now_ms: number;
  build_id: string | null;
  build_number: number | null;
  transition: Transition | null;
  build_created_at: Date | null;
}

interface AgentRow extends AgentTimesRow {
  id: string;
  name: string;
  address: string;
  display_order: number;
}

export async function getWorkspaceView(db: Db, workspaceId: string): Promise<WorkspaceView | null> {
  const { rows } = await sql<WorkspaceRow>`
    select w.id, w.owner_id, w.name, w.created_at,
           (extract(epoch from now()) * 1000)::float8 as now_ms,
           b.id as build_id, b.build_number, b.transition, b.created_at as build_created_at
      from workspaces w
      left join lateral (
        select id, build_number, transition, created_at from workspace_builds
         where workspace_id = w.id order by build_number desc limit 1
      ) b on true
     where w.id = ${workspaceId} and w.deleted_at is null`.execute(db);
  const w = rows[0];
  if (!w) return null;
  let agents: AgentRow[] = [];
  // The latest build's agents as registered, whatever its transition (a control plane writing
  // these tables may give a stop build agents; the gate still treats it as having none).
  if (w.build_id !== null) {
    agents = (
      await sql<AgentRow>`
        select a.id, a.name, a.address, a.display_order, ${AGENT_TIMES_SQL}
          from workspace_agents a
         where a.build_id = ${w.build_id}
         order by a.display_order, a.name collate "C"`.execute(db)
    ).rows;
  }
  return {
    id: w.id,
    ownerId: w.owner_id,
    name: w.name,
    createdAt: w.created_at,
    nowMs: w.now_ms,
    latestBuild:
      w.build_id === null
        ? null
        : {
            id: w.build_id,
            buildNumber: w.build_number ?? 0,
            transition: w.transition ?? 'start',
            createdAt: w.build_created_at ?? w.created_at,
          },
    agents: agents.map((a) => ({
      id: a.id,
      name: a.name,
      address: a.address,
      displayOrder: a.display_order,
      ...agentTimes(a),
    })),
  };
}

/** Marks a workspace deleted and tells every replica; the event published, or undefined when it did not exist. */
export async function deleteWorkspace(db: Db, workspaceId: string): Promise<GateEvent | undefined> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: string }>`
      update workspaces set deleted_at = now()
       where id = ${workspaceId} and deleted_at is null
      returning id`.execute(trx);
    if (rows.length === 0) return undefined;
    const event: GateEvent = { kind: 'workspace_deleted', workspaceId };
    await publishEvent(trx, event);
    return event;
  });
}

export interface AgentInput {
  name: string;
  address: string;
  connectionTimeoutSeconds?: number | undefined;
  displayOrder?: number | undefined;
}

export interface CreatedBuild {
  build: { id: string; buildNumber: number; transition: Transition };
  agents: Array<{ id: string; name: string; token: string }>;
  /** The event published with it. */
  event: GateEvent;
}

/**
 * Creates the next build and its agents in one transaction. The workspace row is locked first,
 * so concurrent builds of one workspace are numbered one after the other, never twice the same.
 * Null when the workspace does not exist.
 */
export async function createBuild(
  db: Db,
  workspaceId: string,
  transition: Transition,
  agents: AgentInput[],
): Promise<CreatedBuild | null> {
  return db.transaction().execute(async (trx) => {
    const { rows: locked } = await sql<{ id: string }>`
      select id from workspaces where id = ${workspaceId} and deleted_at is null for update`.execute(trx);
    if (locked.length === 0) return null;
    const { rows: built } = await sql<{ id: string; build_number: number }>`
      insert into workspace_builds (workspace_id, build_number, transition)
      select ${workspaceId}, coalesce(max(build_number), 0) + 1, ${transition}
        from workspace_builds where workspace_id = ${workspaceId}
      returning id, build_number`.execute(trx);
    const build = built[0];
    if (!build) throw new Error('insert into workspace_builds returned no row');
    const created: CreatedBuild['agents'] = [];
    if (agents.length > 0) {
      const tokens = new Map(agents.map((a) => [a.name, mintToken('agent')]));
      const inserted = await trx
        .insertInto('workspace_agents')
        .values(
          agents.map((a) => ({
            build_id: build.id,
            name: a.name,
            address: a.address,
            display_order: a.displayOrder ?? 0,
            connection_timeout_seconds: a.connectionTimeoutSeconds ?? 120,
            token_hash: hashToken(tokens.get(a.name) ?? ''),
          })),
        )
        .returning(['id', 'name'])
        .execute();
      for (const row of inserted) created.push({ id: row.id, name: row.name, token: tokens.get(row.name) ?? '' });
    }
    const event: GateEvent = { kind: 'build_created', workspaceId, buildId: build.id };
    await publishEvent(trx, event);
    return { build: { id: build.id, buildNumber: build.build_number, transition }, agents: created, event };
  });
}
