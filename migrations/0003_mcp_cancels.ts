// MCP cancels that found no call on the replica they reached, for every replica to apply to its
// own calls. The row is the cancel: the NOTIFY on agentgate_mcp_cancels only says there are new
// ones to read, so a role that can merely connect (NOTIFY needs no privilege) cannot cancel
// anyone's call. Rows are kept a few minutes and swept by the writers.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table mcp_cancels (
      id bigint generated always as identity primary key,
      key bytea not null,
      reason text not null,
      created_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index mcp_cancels_created_at_idx on mcp_cancels (created_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table mcp_cancels`.execute(db);
}
