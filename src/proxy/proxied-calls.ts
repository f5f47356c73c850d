// The proxied requests in flight, by the agent they reached, so that the watch over calls in
// flight can end those on an agent the gate would now refuse (src/gate/call-watch.ts). One small
// entry per request; the abort is forwardRequest's own.
import { AgentGone } from '../domain/agent-gone.js';
import type { ReachedCall } from '../gate/call-watch.js';

export interface ProxiedCall {
  readonly agentId: string;
  /** Set once the request to the agent is under way. */
  abort: ((reason: Error) => void) | undefined;
}

export class ProxiedCalls {
  readonly #calls = new Set<ProxiedCall>();

  get size(): number {
    return this.#calls.size;
  }

  add(agentId: string): ProxiedCall {
    const call: ProxiedCall = { agentId, abort: undefined };
    this.#calls.add(call);
    return call;
  }

  delete(call: ProxiedCall): void {
    this.#calls.delete(call);
  }

  /** The requests under way now (a later one is not among them). */
  reached(): ReachedCall[] {
    const reached: ReachedCall[] = [];
    for (const call of this.#calls) {
      const abort = call.abort;
      if (!abort) continue;
      reached.push({
        agentId: call.agentId,
        end: (reason) => {
          if (!this.#calls.has(call)) return false;
          this.#calls.delete(call);
          abort(new AgentGone(reason));
          return true;
        },
      });
    }
    return reached;
  }
}
