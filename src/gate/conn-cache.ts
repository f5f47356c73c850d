// The connection cache (contract §5 steps 10, 12): per agent, at most `max` entries (least recently
// used closed first) and idle-expiring. A caller holds a lease while it uses a connection; an
// evicted connection closes only when its last lease is returned, so a call never receives, nor
// keeps using, a pool that the cache closed under it.
import { LRUCache } from 'lru-cache';
import type { AgentConnection } from '../transport/agent-transport.js';

interface Entry {
  conn: AgentConnection;
  leases: number;
  retired: boolean;
}

export interface Lease {
  readonly conn: AgentConnection;
  release(): void;
  /**
   * Reports the connection broken (its sockets failed under a request): it leaves the cache,
   * unless a newer one already replaced it, and closes once its last lease is returned.
   */
  markBroken(): void;
  /**
   * Another lease on the same connection, taken while this one is held: valid even when the
   * connection has been evicted meanwhile (it closes when the last lease is returned).
   */
  share(): Lease;
}

/** What the gate lets others see of its cache: observation only, never use or eviction. */
export interface CachedConnections {
  readonly size: number;
  has(agentId: string): boolean;
  /** The agent's live cached connection, without a lease and without counting as use. */
  peek(agentId: string): AgentConnection | undefined;
}

export interface ConnCacheOptions {
  max: number;
  idleMs: number;
  onSizeChange?: (size: number) => void;
  /** Told of a cached connection lost as a whole (AgentConnection.onLost), after it left the cache. */
  onLost?: (conn: AgentConnection, reason: Error) => void;
}

export class ConnCache implements CachedConnections {
  readonly #lru: LRUCache<string, Entry>;
  readonly #onSizeChange: (size: number) => void;
  readonly #onLost: ((conn: AgentConnection, reason: Error) => void) | undefined;
  readonly #sweeper: NodeJS.Timeout;
  /** Entries with at least one lease. Tracked here because the cache's own walks skip stale entries. */
  readonly #leased = new Set<Entry>();

  constructor(options: ConnCacheOptions) {
    this.#onSizeChange = options.onSizeChange ?? (() => undefined);
    this.#onLost = options.onLost;
    this.#lru = new LRUCache<string, Entry>({
      max: options.max,
      ttl: options.idleMs,
      // Each use restarts the idle clock. No per-entry timers (ttlAutopurge would reset one on
      // every hit): an expired entry is never returned by get(), and the sweep below closes it.
      updateAgeOnGet: true,
      dispose: (entry) => this.#retire(entry),
      disposeAfter: () => this.#onSizeChange(this.#lru.size),
    });
    const every = Math.min(Math.max(Math.floor(options.idleMs / 2), 10), 5_000);
    this.#sweeper = setInterval(() => this.#sweep(), every);
    this.#sweeper.unref();
  }

  /**
   * Connections in use (a long stream, a WebSocket) count as used; idle ones are closed. A sweep
   * that runs late (the event loop lagged past the idle time) still keeps the leased ones: they
   * are refreshed even when already stale, before the stale ones are purged.
   */
  #sweep(): void {
    for (const entry of this.#leased) this.#hold(entry);
    this.#lru.purgeStale();
  }

  /** Restarts a leased entry's idle clock, stale or not, if it is still the agent's entry. */
  #hold(entry: Entry): void {
    const agentId = entry.conn.agentId;
    if (this.#lru.peek(agentId, { allowStale: true }) === entry) this.#lru.set(agentId, entry);
  }

  /** The agent's entry when a lease holds it, however long since its clock last restarted. */
  #leasedEntry(agentId: string): Entry | undefined {
    const entry = this.#lru.peek(agentId, { allowStale: true });
    return entry !== undefined && entry.leases > 0 ? entry : undefined;
  }

  get size(): number {
    return this.#lru.size;
  }

  /** A lease on the agent's live connection, counting as use; undefined when none is cached. */
  acquire(agentId: string): Lease | undefined {
    const held = this.#leasedEntry(agentId);
    if (held) this.#hold(held);
    const entry = this.#lru.get(agentId);
    if (!entry) return undefined;
    if (entry.conn.closed) {
      this.#lru.delete(agentId);
      return undefined;
    }
    return this.#lease(entry);
  }

  /** Caches a freshly dialed connection (replacing any other for the agent) and leases it. */
  add(conn: AgentConnection): Lease {
    const entry: Entry = { conn, leases: 0, retired: false };
    // A connection lost as a whole (a tunnel that closed) leaves at once, not at the next call.
    conn.onLost((reason) => {
      this.evictIf(conn.agentId, conn);
      this.#onLost?.(conn, reason);
    });
    this.#lru.set(conn.agentId, entry);
    this.#onSizeChange(this.#lru.size);
    return this.#lease(entry);
  }

  has(agentId: string): boolean {
    return this.#lru.has(agentId) || this.#leasedEntry(agentId) !== undefined;
  }

  peek(agentId: string): AgentConnection | undefined {
    const conn = (this.#lru.peek(agentId) ?? this.#leasedEntry(agentId))?.conn;
    return conn && !conn.closed ? conn : undefined;
  }

  evict(agentId: string): boolean {
    return this.#lru.delete(agentId);
  }

  /** Evicts the agent's entry only if it still holds `conn` (a newer dial may have replaced it). */
  evictIf(agentId: string, conn: AgentConnection): boolean {
    return this.#lru.peek(agentId, { allowStale: true })?.conn === conn && this.#lru.delete(agentId);
  }

  /** Evicts every connection to an agent of the workspace; returns how many. */
  evictWorkspace(workspaceId: string, except?: (conn: AgentConnection) => boolean): number {
    // A sweep first: the walk below skips stale entries, and a leased one that went stale while
    // the event loop lagged must be evicted too, not refreshed by the next sweep.
    this.#sweep();
    let evicted = 0;
    for (const [agentId, entry] of this.#lru.entries()) {
      if (entry.conn.target.workspaceId === workspaceId && !except?.(entry.conn)) {
        this.#lru.delete(agentId);
        evicted += 1;
      }
    }
    return evicted;
  }

  /** Closes every connection (shutdown): in-flight requests on them finish first. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    // dump(), unlike values(), includes stale entries: every connection is closed and awaited.
    const conns = this.#lru.dump().map(([, { value }]) => value.conn);
    this.#lru.clear();
    this.#leased.clear();
    await Promise.all(conns.map((c) => c.close()));
  }

  #lease(entry: Entry): Lease {
    entry.leases += 1;
    this.#leased.add(entry);
    let released = false;
    return {
      conn: entry.conn,
      release: () => {
        if (released) return;
        released = true;
        entry.leases -= 1;
        if (entry.leases > 0) return;
        this.#leased.delete(entry);
        if (entry.retired) void entry.conn.close();
      },
      markBroken: () => {
        this.evictIf(entry.conn.agentId, entry.conn);
      },
      share: () => this.#lease(entry),
    };
  }

  #retire(entry: Entry): void {
    if (entry.retired) return;
    entry.retired = true;
    if (entry.leases === 0) void entry.conn.close();
  }
}
