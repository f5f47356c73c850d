// Degraded mode (contract §5 step 9): the last row read per (workspace, agent name), so that a
// call arriving while the database cannot be read is still served on a live cached connection
// to the agent that row named, as that row said, and never beyond what the database last said.
import { LRUCache } from 'lru-cache';
import type { Lease } from './conn-cache.js';
import type { GateRequest, GateSuccess, Snapshot } from './gate-types.js';

export const readKey = (req: { workspaceId: string; agentName?: string | undefined }) => `${req.workspaceId}\u0000${req.agentName ?? ''}`;

export class Snapshots {
  readonly #last: LRUCache<string, Snapshot>;

  constructor(
    max: number,
    /** Told the agent of a snapshot the database contradicted: its connection must not serve. */
    private readonly onContradicted: (agentId: string) => void,
  ) {
    this.#last = new LRUCache({ max });
  }

  /** Keeps what a fresh read said. */
  remember(key: string, snapshot: Snapshot): void {
    this.#last.set(key, snapshot);
  }

  /**
   * A fresh read of `key` that names another agent than the snapshot (or none: the workspace is
   * gone, stopped, or rebuilt, perhaps by a control plane that sends no notification): neither
   * the snapshot nor its connection may serve a degraded answer any more.
   */
  contradict(key: string, agentId: string | undefined): void {
    const last = this.#last.get(key);
    if (!last || last.agent.id === agentId) return;
    this.#last.delete(key);
    this.onContradicted(last.agent.id);
  }

  /**
   * The degraded answer to `req`: its key's snapshot, on a lease of the live cached connection
   * to that agent; undefined when there is none, or the caller may not see it.
   */
  serve(req: GateRequest, acquire: (agentId: string) => Lease | undefined): GateSuccess | undefined {
    const last = this.#last.get(readKey(req));
    if (!last || (req.ownerScope !== null && last.ownerId !== req.ownerScope)) return undefined;
    const lease = acquire(last.agent.id);
    if (!lease) return undefined;
    return {
      workspaceId: req.workspaceId,
      ownerId: last.ownerId,
      agent: last.agent,
      classification: last.classification,
      lease,
      cached: true,
      degraded: true,
    };
  }
}
