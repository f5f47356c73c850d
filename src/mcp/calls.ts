// The MCP tool requests this process is running, by who may cancel them: a caller's
// `notifications/cancelled`, which a stateless client sends in a POST of its own, is matched on
// the token, the endpoint (workspace and agent selection) and the request id. Ids are only
// unique per client, and several clients may share a token: a cancel that matches more than one
// call cancels none (the caller's own request ending always cancels). A cancel that matches
// nothing here is recorded for every replica (src/mcp/cancel-relay.ts), and each applies it to
// its own calls: the call may run on another (no affinity). What ends calls from outside their
// request otherwise (authority, the agent's going) is the work in flight's (src/gate/in-flight.ts).
import type { RequestId } from '@modelcontextprotocol/sdk/types.js';
import { CallCancelled } from '../domain/failures.js';


export interface RunningCall {
  /** Aborted with CallCancelled. */
  readonly signal: AbortSignal;
  /** Forgets the call (it is over). */
  close(): void;
}

/** Who may cancel a call: the same token, on the same endpoint, naming the same request id. */
export function cancelKey(tokenKey: string, endpoint: string, id: RequestId): string {
  return `${tokenKey}\u0000${endpoint}\u0000${typeof id}:${String(id)}`;
}

export class RunningCalls {
  readonly #byKey = new Map<string, Set<AbortController>>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  open(key: string): RunningCall {
    const controller = new AbortController();
    let set = this.#byKey.get(key);
    if (!set) this.#byKey.set(key, (set = new Set()));
    set.add(controller);
    this.#size += 1;
    let closed = false;
    return {
      signal: controller.signal,
      close: () => {
        if (closed) return;
        closed = true;
        this.#size -= 1;
        set.delete(controller);
        if (set.size === 0 && this.#byKey.get(key) === set) this.#byKey.delete(key);
      },
    };
  }

  /** Cancels the one call under `key`; none when there is none, or more than one. */
  cancel(key: string, reason: string): 'cancelled' | 'none' | 'ambiguous' {
    const set = this.#byKey.get(key);
    if (!set || set.size === 0) return 'none';
    if (set.size > 1) return 'ambiguous';
    for (const controller of set) controller.abort(new CallCancelled(reason || 'the caller cancelled the request'));
    return 'cancelled';
  }
}
