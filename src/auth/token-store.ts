// Resolves bearer tokens to principals through a short in-memory cache (contract §5 step 1): each
// entry lives at most `ttlMs` from the read that filled it, so a database outage does not lock
// out callers, and revocations are applied at once here and, through NOTIFY, on every replica.
// Unknown tokens are remembered too, briefly and in a bounded set, so a flood of them costs no
// database read each; a token created anywhere (token_created, build_created) clears that set.
import { LRUCache } from 'lru-cache';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { ENV_TOKEN_ID, type Principal } from './principal.js';
import { hashToken, sameHash } from '../domain/tokens.js';

export interface TokenStoreOptions {
  db: Kysely<Database>;
  /** Accepted as admin without a database row (AGENTGATE_ADMIN_TOKEN). */
  adminToken?: string | undefined;
  ttlMs?: number;
  maxEntries?: number;
  /** How long an unknown token is answered without a read (0 turns this off). */
  unknownTtlMs?: number;
  maxUnknownEntries?: number;
  /** Told where each answer came from (metrics). */
  onLookup?: ((source: 'env' | 'cache' | 'unknown_cache' | 'database') => void) | undefined;
}

interface TokenRow {
  kind: 'api' | 'agent';
  id: string;
  scope: 'admin' | 'conn' | null;
  owner_id: string | null;
  workspace_id: string | null;
}

export class TokenStore {
  readonly #db: Kysely<Database>;
  readonly #adminHash: Buffer | undefined;
  readonly #cache: LRUCache<string, Principal>;
  /** Hashes of tokens just found unknown; undefined when turned off. */
  readonly #unknown: LRUCache<string, true> | undefined;
  /** Bumped by every forget, so a lookup that raced with one does not refill the cache. */
  #generation = 0;
  /** Bumped when tokens are created, so a lookup that raced with a creation is not cached as unknown. */
  #unknownGeneration = 0;

  readonly #onLookup: TokenStoreOptions['onLookup'];

  constructor(options: TokenStoreOptions) {
    this.#onLookup = options.onLookup;
    this.#db = options.db;
    this.#adminHash = options.adminToken ? hashToken(options.adminToken) : undefined;
    this.#cache = new LRUCache<string, Principal>({
      max: options.maxEntries ?? 10_000,
      // 60 s is the most contract §5 allows: the bound on how long a revocation can go unnoticed
      // by a replica whose notifications failed.
      ttl: Math.min(options.ttlMs ?? 60_000, 60_000),
      ttlAutopurge: false,
    });
    const unknownTtlMs = options.unknownTtlMs ?? 5_000;
    this.#unknown =
      unknownTtlMs > 0
        ? new LRUCache<string, true>({ max: options.maxUnknownEntries ?? 10_000, ttl: unknownTtlMs, ttlAutopurge: false })
        : undefined;
  }

  /** The principal of a token, or null when unknown or revoked. Throws on database failure. */
  async resolve(token: string): Promise<Principal | null> {
    const hash = hashToken(token);
    const told = this.#onLookup;
    if (this.#adminHash && sameHash(hash, this.#adminHash)) {
      told?.('env');
      return { kind: 'admin', tokenId: ENV_TOKEN_ID };
    }
    const key = hash.toString('base64');
    const cached = this.#cache.get(key);
    if (cached) {
      told?.('cache');
      return cached;
    }
    if (this.#unknown?.get(key)) {
      told?.('unknown_cache');
      return null;
    }
    told?.('database');
    const generation = this.#generation;
    const unknownGeneration = this.#unknownGeneration;
    const principal = await this.#lookup(hash);
    // A read that overlapped a revocation or deletion may predate it, and one that overlapped a
    // creation may miss it: answer it, but do not cache it.
    if (principal && generation === this.#generation) this.#cache.set(key, principal);
    if (!principal && unknownGeneration === this.#unknownGeneration) this.#unknown?.set(key, true);
    return principal;
  }

  async #lookup(hash: Buffer): Promise<Principal | null> {
    const { rows } = await sql<TokenRow>`
      select 'api' as kind, t.id, t.scope, t.owner_id, null::uuid as workspace_id
        from api_tokens t
       where t.token_hash = ${hash} and t.revoked_at is null
      union all
      select 'agent', a.id, null, null, b.workspace_id
        from workspace_agents a
        join workspace_builds b on b.id = a.build_id
        join workspaces w on w.id = b.workspace_id
       where a.token_hash = ${hash} and w.deleted_at is null
       limit 1`.execute(this.#db);
    const row = rows[0];
    if (!row) return null;
    if (row.kind === 'agent') return { kind: 'agent', agentId: row.id, workspaceId: row.workspace_id ?? '' };
    if (row.scope === 'admin') return { kind: 'admin', tokenId: row.id };
    return { kind: 'conn', tokenId: row.id, ownerId: row.owner_id };
  }

  forgetToken(tokenId: string): void {
    this.#forgetWhere((p) => p.kind !== 'agent' && p.tokenId === tokenId);
  }

  forgetWorkspace(workspaceId: string): void {
    this.#forgetWhere((p) => p.kind === 'agent' && p.workspaceId === workspaceId);
  }

  /** A token was created (an API token, or a build's agent tokens): unknown ones may now exist. */
  forgetUnknown(): void {
    this.#unknownGeneration++;
    this.#unknown?.clear();
  }

  /** After missed notifications nothing cached can be trusted. */
  forgetAll(): void {
    this.#generation++;
    this.#cache.clear();
    this.forgetUnknown();
  }

  #forgetWhere(match: (p: Principal) => boolean): void {
    this.#generation++;
    for (const [key, principal] of this.#cache.entries()) {
      if (match(principal)) this.#cache.delete(key);
    }
  }
}
