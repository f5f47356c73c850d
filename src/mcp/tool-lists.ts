// The last tools/list each agent answered, kept in memory (bounded: least recently used first
// out, by count and by size) so that while the gate refuses an agent, tools/list still shows its
// tools, marked stale (SPEC 11): the model can call one and read why it cannot run. Each list is
// also kept under its workspace and agent selection, for refusals that name no agent (a
// stopped workspace). A list is the workspace owner's: it is kept with the owner read when it was
// made and recalled only for an admin or that owner, since a refusal (the database unreadable,
// above all) may come before the gate could check who sees the workspace.
import { LRUCache } from 'lru-cache';
import type { ListToolsResult } from '@modelcontextprotocol/sdk/types.js';

export interface ToolListsOptions {
  /** Lists kept at most (each under two keys). */
  max?: number;
  /** Their total size at most, in bytes of JSON. */
  maxBytes?: number;
}

interface Kept {
  tools: ListToolsResult['tools'];
  ownerId: string;
}

/** Pure: whether a caller of this owner scope (null: admin) may see a list kept for `ownerId`. */
export const mayRecall = (ownerScope: string | null, ownerId: string): boolean => ownerScope === null || ownerScope === ownerId;

export class ToolLists {
  readonly #lists: LRUCache<string, Kept>;

  constructor(options: ToolListsOptions = {}) {
    this.#lists = new LRUCache<string, Kept>({
      max: 2 * (options.max ?? 1000),
      maxSize: options.maxBytes ?? 16 * 1024 * 1024,
      sizeCalculation: (kept) => Math.max(1, JSON.stringify(kept.tools).length),
    });
  }

  remember(where: { workspaceId: string; agentName: string | undefined; agentId: string; ownerId: string }, tools: ListToolsResult['tools']): void {
    const kept = { tools, ownerId: where.ownerId };
    this.#lists.set(agentKey(where.agentId), kept);
    this.#lists.set(selectionKey(where), kept);
  }

  /**
   * The last list of the agent, or else of whichever agent the selection last reached; none
   * when the caller (`ownerScope`, null for an admin) is not the owner it was kept for.
   */
  recall(where: { workspaceId: string; agentName: string | undefined; agentId: string | undefined }, ownerScope: string | null): ListToolsResult['tools'] | undefined {
    const kept = (where.agentId === undefined ? undefined : this.#lists.get(agentKey(where.agentId))) ?? this.#lists.get(selectionKey(where));
    return kept && mayRecall(ownerScope, kept.ownerId) ? kept.tools : undefined;
  }
}

const agentKey = (agentId: string) => `agent\u0000${agentId}`;
const selectionKey = (where: { workspaceId: string; agentName: string | undefined }) => `selection\u0000${where.workspaceId}\u0000${where.agentName ?? ''}`;
