// The contract §2 schema, with the indexes the gate's per-call read needs:
// a workspace's latest build is the last entry of (workspace_id, build_number), and a build's
// agents come in selection order from (build_id, display_order, name COLLATE "C").
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table workspaces (
      id uuid primary key,
      owner_id uuid not null,
      name text not null,
      created_at timestamptz not null default now(),
      deleted_at timestamptz null
    )`.execute(db);
  await sql`create index workspaces_owner_id_idx on workspaces (owner_id)`.execute(db);

  await sql`
    create table workspace_builds (
      id uuid primary key default gen_random_uuid(),
      workspace_id uuid not null references workspaces,
      build_number integer not null check (build_number > 0),
      transition text not null check (transition in ('start', 'stop', 'delete')),
      created_at timestamptz not null default now(),
      unique (workspace_id, build_number)
    )`.execute(db);

  await sql`
    create table workspace_agents (
      id uuid primary key default gen_random_uuid(),
      build_id uuid not null references workspace_builds,
      name text not null,
      address text not null,
      display_order integer not null default 0,
      connection_timeout_seconds integer not null default 120 check (connection_timeout_seconds >= 0),
      created_at timestamptz not null default now(),
      first_connected_at timestamptz null,
      last_connected_at timestamptz null,
      disconnected_at timestamptz null,
      token_hash bytea not null unique check (octet_length(token_hash) = 32),
      unique (build_id, name)
    )`.execute(db);
  await sql`
    create index workspace_agents_selection_idx
      on workspace_agents (build_id, display_order, name collate "C")`.execute(db);

  await sql`
    create table api_tokens (
      id uuid primary key default gen_random_uuid(),
      name text not null,
      token_hash bytea not null unique check (octet_length(token_hash) = 32),
      scope text not null check (scope in ('admin', 'conn')),
      owner_id uuid null,
      created_at timestamptz not null default now(),
      revoked_at timestamptz null,
      check (scope = 'conn' or owner_id is null)
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table api_tokens`.execute(db);
  await sql`drop table workspace_agents`.execute(db);
  await sql`drop table workspace_builds`.execute(db);
  await sql`drop table workspaces`.execute(db);
}
