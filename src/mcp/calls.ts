// The MCP tool requests this process is running, so that they can be ended from outside the
// HTTP request that carries them:
// - by the caller's `notifications/cancelled`, which a stateless client sends in a POST of its
//   own: matched on the token, the endpoint (workspace and agent selection) and the request id.
//   Ids are only unique per client, and several clients may share a token: a cancel that
//   matches more than one call cancels none (the caller's own request ending always cancels).
//   A cancel that matches nothing here is sent to every replica through NOTIFY, and each
//   applies it to its own calls: the call may run on another (no affinity);
// - by a state transition (this replica's or, through NOTIFY, another's): a call whose agent
//   said goodbye or was replaced ends at once (AGENT_CONNECTION_LOST) instead of waiting on an
//   agent that is going away.
import type { GateEvent } from '../domain/events.js';
import type { RequestId } from '@modelcontextprotocol/sdk/types.js';
import { AgentGone } from '../domain/agent-gone.js';
import type { ReachedCall } from '../gate/call-watch.js';

/** Abort reason: the caller cancelled the request (notifications/cancelled). */
export class CallCancelled extends Error {
  override name = 'CallCancelled';
}

export interface CallTarget {
  workspaceId: string;
  agentId: string;
  /** The agent's build: a notice of another build of the workspace replaces it. */
  buildId: string | undefined;
}

/** Pure: why a transition ends a call on `target`, or undefined when it does not. */
export function endsCall(event: GateEvent, target: CallTarget): string | undefined {
  switch (event.kind) {
    case 'agent_disconnected':
      return event.agentId === target.agentId ? 'the agent said goodbye during the call' : undefined;
    case 'build_created':
      return event.workspaceId === target.workspaceId && event.buildId !== target.buildId
        ? 'the workspace was stopped or rebuilt during the call'
        : undefined;
    case 'workspace_deleted':
      return event.workspaceId === target.workspaceId ? 'the workspace was deleted during the call' : undefined;
    case 'agent_connected':
    case 'agent_reconnected':
    case 'token_created':
    case 'token_revoked':
      return undefined;
  }
}

export interface RunningCall {
  /** Aborted with CallCancelled or AgentGone. */
  readonly signal: AbortSignal;
  /** The agent the call reached, once the gate let it through. */
  setTarget(target: CallTarget): void;
  /** Forgets the call (it is over). */
  close(): void;
}

interface Entry {
  controller: AbortController;
  target: CallTarget | undefined;
}

/** Who may cancel a call: the same token, on the same endpoint, naming the same request id. */
export function cancelKey(tokenKey: string, endpoint: string, id: RequestId): string {
  return `${tokenKey}\u0000${endpoint}\u0000${typeof id}:${String(id)}`;
}

export class RunningCalls {
  readonly #byKey = new Map<string, Set<Entry>>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  open(key: string): RunningCall {
    const entry: Entry = { controller: new AbortController(), target: undefined };
    let set = this.#byKey.get(key);
    if (!set) this.#byKey.set(key, (set = new Set()));
    set.add(entry);
    this.#size += 1;
    let closed = false;
    return {
      signal: entry.controller.signal,
      setTarget: (target) => {
        entry.target = target;
      },
      close: () => {
        if (closed) return;
        closed = true;
        this.#size -= 1;
        set.delete(entry);
        if (set.size === 0 && this.#byKey.get(key) === set) this.#byKey.delete(key);
      },
    };
  }

  /** Cancels the one call under `key`; none when there is none, or more than one. */
  cancel(key: string, reason: string): 'cancelled' | 'none' | 'ambiguous' {
    const set = this.#byKey.get(key);
    if (!set || set.size === 0) return 'none';
    if (set.size > 1) return 'ambiguous';
    for (const entry of set) entry.controller.abort(new CallCancelled(reason || 'the caller cancelled the request'));
    return 'cancelled';
  }

  /**
   * The calls that have reached their agent, now: one that reaches it later is not among them,
   * so what is read after this cannot end a call that passed a newer read of its own.
   */
  reached(): ReachedCall[] {
    const calls: ReachedCall[] = [];
    for (const set of this.#byKey.values()) {
      for (const entry of set) {
        const target = entry.target;
        if (!target || entry.controller.signal.aborted) continue;
        calls.push({
          agentId: target.agentId,
          end: (reason) => {
            if (entry.controller.signal.aborted) return false;
            entry.controller.abort(new AgentGone(reason));
            return true;
          },
        });
      }
    }
    return calls;
  }

  /** Ends the calls a transition takes the agent from; returns how many. */
  apply(event: GateEvent): number {
    let ended = 0;
    for (const set of this.#byKey.values()) {
      for (const entry of set) {
        if (!entry.target || entry.controller.signal.aborted) continue;
        const reason = endsCall(event, entry.target);
        if (reason === undefined) continue;
        entry.controller.abort(new AgentGone(reason));
        ended += 1;
      }
    }
    return ended;
  }
}
