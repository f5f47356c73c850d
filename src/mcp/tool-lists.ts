// The last tools/list each agent answered, kept in memory (bounded: least recently used first
// out, by count and by size) so that while the gate refuses an agent, tools/list still shows its
// tools, marked stale (SPEC 11): the model can call one and read why it cannot run. Each list is
// also kept under its workspace and agent selection, for refusals that name no agent (a
// stopped workspace).
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
}

export class ToolLists {
  readonly #lists: LRUCache<string, Kept>;

  constructor(options: ToolListsOptions = {}) {
    this.#lists = new LRUCache<string, Kept>({
      max: 2 * (options.max ?? 1000),
      maxSize: options.maxBytes ?? 16 * 1024 * 1024,
      sizeCalculation: (kept) => Math.max(1, JSON.stringify(kept.tools).length),
    });
  }

  remember(where: { workspaceId: string; agentName: string | undefined; agentId: string }, tools: ListToolsResult['tools']): void {
    const kept = { tools };
    this.#lists.set(agentKey(where.agentId), kept);
    this.#lists.set(selectionKey(where), kept);
  }

  /** The last list of the agent, or else of whichever agent the selection last reached. */
  recall(where: { workspaceId: string; agentName: string | undefined; agentId: string | undefined }): ListToolsResult['tools'] | undefined {
    return ((where.agentId === undefined ? undefined : this.#lists.get(agentKey(where.agentId))) ?? this.#lists.get(selectionKey(where)))?.tools;
  }
}

const agentKey = (agentId: string) => `agent\u0000${agentId}`;
const selectionKey = (where: { workspaceId: string; agentName: string | undefined }) => `selection\u0000${where.workspaceId}\u0000${where.agentName ?? ''}`;
