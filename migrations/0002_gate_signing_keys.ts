// Signature v2 (contract §4.1): every gate process publishes the public half of its Ed25519 signing
// key here while it runs. The private half is never stored, so reading this table (or any other)
// does not let anyone sign as the gate.
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
    create table gate_signing_keys (
      kid text primary key check (kid ~ '^[A-Za-z0-9_-]{1,64}$'),
      public_key bytea not null check (octet_length(public_key) = 32),
      created_at timestamptz not null default now(),
      expires_at timestamptz not null
    )`.execute(db);
  // GET /agent/keys reads the unexpired keys; the publishers sweep the long-expired ones.
  await sql`create index gate_signing_keys_expires_at_idx on gate_signing_keys (expires_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`drop table gate_signing_keys`.execute(db);
}
