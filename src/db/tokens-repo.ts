// API tokens (contract §4.3): created shown once, stored as SHA-256, revoked by id.
import { sql, type Kysely } from 'kysely';
import type { Database, TokenScope } from './schema.js';
import { publishEvent } from './events.js';
import type { GateEvent } from '../domain/events.js';
import { hashToken, mintToken } from '../domain/tokens.js';

type Db = Kysely<Database>;

export interface TokenInput {
  name: string;
  scope: TokenScope;
  ownerId?: string | null | undefined;
}

/** Creates a token and tells every replica; returns it with the event published. */
export async function createApiToken(db: Db, input: TokenInput): Promise<{ id: string; token: string; event: GateEvent }> {
  const token = mintToken(input.scope);
  const row = await db
    .insertInto('api_tokens')
    .values({ name: input.name, scope: input.scope, owner_id: input.ownerId ?? null, token_hash: hashToken(token) })
    .returning('id')
    .executeTakeFirstOrThrow();
  // After the insert: outside a transaction it has committed, so a replica told of it finds it.
  const event: GateEvent = { kind: 'token_created', tokenId: row.id };
  await publishEvent(db, event);
  return { id: row.id, token, event };
}

/** Revokes a token and tells every replica; the event published, or undefined when no such token exists. */
export async function revokeApiToken(db: Db, tokenId: string): Promise<GateEvent | undefined> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: string }>`
      update api_tokens set revoked_at = coalesce(revoked_at, now()) where id = ${tokenId} returning id`.execute(trx);
    if (rows.length === 0) return undefined;
    const event: GateEvent = { kind: 'token_revoked', tokenId };
    await publishEvent(trx, event);
    return event;
  });
}

/**
 * Creates the first admin token unless one exists. An advisory lock keeps replicas starting
 * together from each minting one. Returns the new token, or null when one already existed.
 */
export async function bootstrapAdminToken(db: Db): Promise<{ id: string; token: string } | null> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtext('agentgate.bootstrap-admin'))`.execute(trx);
    const existing = await trx
      .selectFrom('api_tokens')
      .select('id')
      .where('scope', '=', 'admin')
      .where('revoked_at', 'is', null)
      .limit(1)
      .executeTakeFirst();
    if (existing) return null;
    return createApiToken(trx, { name: 'bootstrap admin', scope: 'admin' });
  });
}
