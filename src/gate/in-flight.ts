// The work in flight of this process, every kind in one registry (proxied requests and streams,
// MCP calls, WebSockets), each with the authority it rests on (src/gate/authority.ts), so that
// one rule ends them all alike when that authority ends:
// - a transition this replica wrote ends what it ends at once (`apply`);
// - a notification from elsewhere only prompts a re-read of the work it names (`hint`): anyone
//   who can connect to the database can send one, and nothing ends on its word;
// - after notifications may have been lost, everything is read afresh (`recheck`);
// - while anything is in flight, its rows are read every interval (one query for all of it): no
//   transition tells of an agent that stopped reporting heartbeats.
// Work registers before anything is sent to its agent. The reads are bounded (one in flight,
// the next merging whatever asked meanwhile), so a flood of notifications costs one query at a
// time, never a pool.
import type { FastifyBaseLogger } from 'fastify';
import type { AuthorityQuery, AuthorityRead } from '../db/authority-read.js';
import type { GateEvent } from '../domain/events.js';
import type { Ending } from '../domain/failures.js';
import { authorityEnded, endsWork, type Authority } from './authority.js';
import { classifyAgent } from './classify.js';

/** One piece of work, as its owner holds it. */
export interface Registration {
  /** How it was ended from outside, once it was. */
  readonly ended: Ending | undefined;
  /** The agent the gate chose for it (from then on, the agent's going ends it too). */
  reached(agentId: string, buildId: string | undefined): void;
  /**
   * What ending it does now (abort the request, close the sockets): replaces the reaction set
   * before, and runs at once when it has already ended.
   */
  onEnd(react: (ending: Ending) => void): void;
  /** The work is over (idempotent). */
  close(): void;
}

export interface InFlightOptions {
  read(queries: readonly AuthorityQuery[]): Promise<AuthorityRead>;
  inactiveTimeoutMs: number;
  disconnectGraceMs: number;
  /** How often the rows of the work in flight are read while there is any. */
  intervalMs: number;
  log: FastifyBaseLogger;
}

/** How often the work in flight is read: half the inactive timeout, within 100 ms and 5 s. */
export function watchIntervalMs(inactiveTimeoutMs: number): number {
  return Math.min(5_000, Math.max(100, Math.round(inactiveTimeoutMs / 2)));
}

/** One piece of work: its registration, as its owner holds it (one object, no closures: it is made per request). */
class Entry implements Registration {
  authority: Authority;
  ended: Ending | undefined = undefined;
  react: ((ending: Ending) => void) | undefined = undefined;
  closed = false;

  constructor(
    private readonly registry: InFlight,
    readonly set: Set<Entry>,
    authority: Pick<Authority, 'tokenId' | 'ownerScope' | 'workspaceId'>,
  ) {
    this.authority = { tokenId: authority.tokenId, ownerScope: authority.ownerScope, workspaceId: authority.workspaceId, agentId: undefined, buildId: undefined };
  }

  reached(agentId: string, buildId: string | undefined): void {
    this.authority = { ...this.authority, agentId, buildId };
  }

  onEnd(react: (ending: Ending) => void): void {
    this.react = react;
    if (this.ended) react(this.ended);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.registry.forget(this);
  }
}

export class InFlight {
  /** By workspace: every transition but a revocation names one. */
  readonly #byWorkspace = new Map<string, Set<Entry>>();
  #size = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Work asked to be read again, waiting for the read in flight to finish. */
  #pending = new Set<Entry>();
  #reading: Promise<number> | undefined;
  #failing = false;

  constructor(private readonly options: InFlightOptions) {}

  get size(): number {
    return this.#size;
  }

  register(authority: Pick<Authority, 'tokenId' | 'ownerScope' | 'workspaceId'>): Registration {
    let set = this.#byWorkspace.get(authority.workspaceId);
    if (!set) this.#byWorkspace.set(authority.workspaceId, (set = new Set()));
    const entry = new Entry(this, set, authority);
    set.add(entry);
    this.#size += 1;
    return entry;
  }

  /** An entry's own close. */
  forget(entry: Entry): void {
    this.#size -= 1;
    entry.set.delete(entry);
    const workspaceId = entry.authority.workspaceId;
    if (entry.set.size === 0 && this.#byWorkspace.get(workspaceId) === entry.set) this.#byWorkspace.delete(workspaceId);
  }

  /** A transition this replica wrote: ends at once the work it ends; returns how many. */
  apply(event: GateEvent): number {
    let ended = 0;
    for (const entry of this.#affected(event)) {
      const ending = endsWork(event, entry.authority);
      if (ending && this.#end(entry, ending)) ended += 1;
    }
    if (ended > 0) this.options.log.info({ ended, reason: event.kind }, 'ended work in flight whose authority ended');
    return ended;
  }

  /**
   * The gate lost its connection to the agent as a whole: the work that reached that agent ends
   * at once, every kind alike; returns how many.
   */
  connectionLost(workspaceId: string, agentId: string, reason: string): number {
    let ended = 0;
    for (const entry of [...(this.#byWorkspace.get(workspaceId) ?? [])]) {
      if (entry.authority.agentId === agentId && this.#end(entry, { code: 'AGENT_CONNECTION_LOST', reason })) ended += 1;
    }
    if (ended > 0) this.options.log.info({ ended, agentId, reason }, 'ended work in flight on a lost connection');
    return ended;
  }

  /**
   * A transition announced by a notification: the work it would end is read afresh, and only
   * what the rows confirm ends. Resolves with how many ended.
   */
  hint(event: GateEvent): Promise<number> {
    const named = this.#affected(event).filter((entry) => endsWork(event, entry.authority) !== undefined);
    return named.length === 0 ? Promise.resolve(0) : this.#readAgain(named);
  }

  /** Every piece of work read afresh (notifications may have been lost); resolves with how many ended. */
  recheck(): Promise<number> {
    const all: Entry[] = [];
    for (const set of this.#byWorkspace.values()) for (const entry of set) all.push(entry);
    return all.length === 0 ? Promise.resolve(0) : this.#readAgain(all);
  }

  start(): void {
    this.#timer = setInterval(() => void this.recheck(), this.options.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #affected(event: GateEvent): Entry[] {
    if (event.kind === 'token_revoked') {
      const all: Entry[] = [];
      for (const set of this.#byWorkspace.values()) for (const entry of set) all.push(entry);
      return all;
    }
    if (!('workspaceId' in event)) return [];
    return [...(this.#byWorkspace.get(event.workspaceId) ?? [])];
  }

  #end(entry: Entry, ending: Ending): boolean {
    if (entry.closed || entry.ended) return false;
    entry.ended = ending;
    entry.react?.(ending);
    return true;
  }

  /** Reads `entries` again: now, or after the read in flight, together with whatever else asked. */
  #readAgain(entries: Entry[]): Promise<number> {
    for (const entry of entries) this.#pending.add(entry);
    if (this.#reading) return this.#reading.then(() => this.#readAgain([]));
    if (this.#pending.size === 0) return Promise.resolve(0);
    const reading = this.#read();
    this.#reading = reading;
    void reading.finally(() => {
      if (this.#reading === reading) this.#reading = undefined;
    });
    return reading;
  }

  async #read(): Promise<number> {
    // Each entry is judged on the authority it had before the read: an agent it reaches while
    // the read runs is newer than what is read.
    const judged = [...this.#pending].filter((e) => !e.closed && !e.ended).map((entry) => ({ entry, authority: entry.authority }));
    this.#pending.clear();
    if (judged.length === 0) return 0;
    const queries: AuthorityQuery[] = [];
    const index = new Map<string, number>();
    const at = judged.map(({ authority: a }) => {
      const key = `${a.tokenId ?? ''}|${a.workspaceId}|${a.agentId ?? ''}`;
      let i = index.get(key);
      if (i === undefined) {
        i = queries.push({ tokenId: a.tokenId, workspaceId: a.workspaceId, agentId: a.agentId }) - 1;
        index.set(key, i);
      }
      return i;
    });
    let read: AuthorityRead;
    try {
      read = await this.options.read(queries);
      this.#failing = false;
    } catch (error) {
      // The work runs on (its own bounds still hold); the next read tries again.
      if (!this.#failing) this.options.log.warn({ err: (error as Error).message }, 'could not read what the work in flight rests on');
      this.#failing = true;
      return 0;
    }
    const { inactiveTimeoutMs, disconnectGraceMs } = this.options;
    let ended = 0;
    for (const [n, { entry, authority }] of judged.entries()) {
      const row = read.rows[at[n]!];
      if (!row) continue;
      const agent = row.agent && { classification: classifyAgent(row.agent.times, read.nowMs, inactiveTimeoutMs), current: row.agent.current };
      const ending = authorityEnded({ tokenLive: row.tokenLive, ownerId: row.ownerId, agent }, authority, disconnectGraceMs);
      if (ending && this.#end(entry, ending)) ended += 1;
    }
    if (ended > 0) this.options.log.info({ ended }, 'ended work in flight whose authority ended or whose agent the gate would now refuse');
    return ended;
  }
}
