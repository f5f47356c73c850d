// The last tools/list each agent answered, kept in memory (bounded: least recently used first
// out, by count and by size in bytes) so that while the gate refuses an agent, tools/list still
// shows its tools, marked stale (contract §11): the model can call one and read why it cannot run.
// Each workspace and agent selection also remembers which agent it last reached, for refusals
// that name no agent (a stopped workspace); the list itself is kept once, under its agent. A
// list is the workspace owner's: it is kept with the owner read when it was made and recalled
// only for an admin or that owner, since a refusal (the database unreadable, above all) may
// come before the gate could check who sees the workspace.
import { LRUCache } from 'lru-cache';
import type { ListToolsResult } from '@modelcontextprotocol/sdk/types.js';

export interface ToolListsOptions {
  /** Lists kept at most (and as many selections). */
  max?: number;
  /** Their total size at most, in bytes of JSON (UTF-8). */
  maxBytes?: number;
}

interface Kept {
  tools: ListToolsResult['tools'];
  ownerId: string;
}

/** Pure: whether a caller of this owner scope (null: admin) may see a list kept for `ownerId`. */
export const mayRecall = (ownerScope: string | null, ownerId: string): boolean => ownerScope === null || ownerScope === ownerId;

export class ToolLists {
  /** By agent id. */
  readonly #lists: LRUCache<string, Kept>;
  /** Selection (workspace and agent name) to the agent id it last reached. */
  readonly #selections: LRUCache<string, string>;

  constructor(options: ToolListsOptions = {}) {
    const max = options.max ?? 1000;
    this.#lists = new LRUCache<string, Kept>({
      max,
      maxSize: options.maxBytes ?? 16 * 1024 * 1024,
      sizeCalculation: (kept) => Math.max(1, Buffer.byteLength(JSON.stringify(kept.tools), 'utf8')),
    });
    this.#selections = new LRUCache<string, string>({ max });
  }

  remember(where: { workspaceId: string; agentName: string | undefined; agentId: string; ownerId: string }, tools: ListToolsResult['tools']): void {
    this.#lists.set(where.agentId, { tools, ownerId: where.ownerId });
    this.#selections.set(selectionKey(where), where.agentId);
  }

  /**
   * The last list of the agent, or else of whichever agent the selection last reached; none
   * when the caller (`ownerScope`, null for an admin) is not the owner it was kept for.
   */
  recall(where: { workspaceId: string; agentName: string | undefined; agentId: string | undefined }, ownerScope: string | null): ListToolsResult['tools'] | undefined {
    const own = where.agentId === undefined ? undefined : this.#lists.get(where.agentId);
    const last = this.#selections.get(selectionKey(where));
    const kept = own ?? (last === undefined ? undefined : this.#lists.get(last));
    return kept && mayRecall(ownerScope, kept.ownerId) ? kept.tools : undefined;
  }
}

const selectionKey = (where: { workspaceId: string; agentName: string | undefined }) => `${where.workspaceId}\u0000${where.agentName ?? ''}`;
