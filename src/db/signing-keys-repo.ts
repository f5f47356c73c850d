// gate_signing_keys (contract §4.1): each gate process's public key, kept unexpired while it runs.
// Expiry is set and judged by the database's clock, like every other timestamp.
import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

type Db = Kysely<Database>;

/** Long-expired rows (of processes that died without deleting theirs) are swept after this. */
const SWEEP_AFTER = '1 day';

/** Inserts the key, or moves its expiry to now() + lifetime; sweeps long-dead keys alongside. */
export async function publishSigningKey(db: Db, kid: string, publicKey: Buffer, lifetimeMs: number): Promise<void> {
  await sql`
    with swept as (
      delete from gate_signing_keys where expires_at < now() - ${SWEEP_AFTER}::interval
    )
    insert into gate_signing_keys (kid, public_key, expires_at)
    values (${kid}, ${publicKey}, now() + make_interval(secs => ${lifetimeMs / 1000}))
    on conflict (kid) do update set expires_at = excluded.expires_at`.execute(db);
}

export async function deleteSigningKey(db: Db, kid: string): Promise<void> {
  await db.deleteFrom('gate_signing_keys').where('kid', '=', kid).execute();
}

export interface PublishedKey {
  kid: string;
  publicKey: Buffer;
  expiresAt: Date;
}

export async function unexpiredSigningKeys(db: Db): Promise<PublishedKey[]> {
  const rows = await db
    .selectFrom('gate_signing_keys')
    .select(['kid', 'public_key', 'expires_at'])
    .where('expires_at', '>', sql<Date>`now()`)
    .orderBy('created_at')
    .orderBy('kid')
    .execute();
  return rows.map((r) => ({ kid: r.kid, publicKey: r.public_key, expiresAt: r.expires_at }));
}
