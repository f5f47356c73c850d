// Open WebSocket tunnels and the authority each rests on: the token that opened it, the
// workspace and the agent it reaches. A tunnel ends when that authority ends (a revoked token,
// a deleted, stopped or rebuilt workspace, an agent's goodbye), on this replica or, through
// NOTIFY, on any other; it also ends when idle too long or, optionally, when too old.
import type { GateEvent } from '../domain/events.js';

export interface TunnelAuthority {
  tokenId: string;
  workspaceId: string;
  agentId: string;
  /** The build of the agent, when known: a later build of the workspace replaces it. */
  buildId: string | undefined;
}

/** Pure: whether a state transition ends a tunnel resting on `authority`. */
export function endsTunnel(event: GateEvent, authority: TunnelAuthority): string | undefined {
  switch (event.kind) {
    case 'token_revoked':
      return event.tokenId === authority.tokenId ? 'its token was revoked' : undefined;
    case 'workspace_deleted':
      return event.workspaceId === authority.workspaceId ? 'its workspace was deleted' : undefined;
    case 'build_created':
      // Any other build (stop, delete, or a start with new agents) replaces the agent.
      return event.workspaceId === authority.workspaceId && event.buildId !== authority.buildId
        ? 'its workspace was stopped or rebuilt'
        : undefined;
    case 'agent_disconnected':
      return event.agentId === authority.agentId ? 'its agent said goodbye' : undefined;
    case 'agent_connected':
    case 'agent_reconnected':
      return undefined;
  }
}

interface Entry {
  authority: TunnelAuthority;
  close(reason: string): void;
}

export class Tunnels {
  readonly #open = new Set<Entry>();

  get size(): number {
    return this.#open.size;
  }

  /** Registers an open tunnel; the returned function forgets it (call it when it closes). */
  add(authority: TunnelAuthority, close: (reason: string) => void): () => void {
    const entry: Entry = { authority, close };
    this.#open.add(entry);
    return () => this.#open.delete(entry);
  }

  /** Closes the tunnels a state transition ends; returns how many. */
  apply(event: GateEvent): number {
    let closed = 0;
    for (const entry of [...this.#open]) {
      const reason = endsTunnel(event, entry.authority);
      if (reason === undefined) continue;
      this.#open.delete(entry);
      entry.close(reason);
      closed += 1;
    }
    return closed;
  }

  /** Every open tunnel's authority, for re-checking after notifications may have been lost. */
  authorities(): TunnelAuthority[] {
    return [...this.#open].map((e) => e.authority);
  }

  /** Closes the tunnels whose authority `stillHolds` denies. */
  async recheck(stillHolds: (authority: TunnelAuthority) => Promise<string | undefined>): Promise<number> {
    let closed = 0;
    for (const entry of [...this.#open]) {
      const reason = await stillHolds(entry.authority).catch(() => undefined);
      if (reason === undefined || !this.#open.has(entry)) continue;
      this.#open.delete(entry);
      entry.close(reason);
      closed += 1;
    }
    return closed;
  }
}
