// A call in flight (a proxied request, an MCP tool call) on an agent that dies without a
// goodbye (frozen, cut off from the network) would run on until a silence bound, or for as long
// as something keeps its stream open; and one whose workspace changed while notifications were
// down would never hear of it. While calls are in flight, their agents are read every interval
// (one query for all of them), and the calls on an agent the gate would now refuse a new call
// for end (AGENT_CONNECTION_LOST), as a goodbye ends them.
import type { FastifyBaseLogger } from 'fastify';
import type { AgentTimesRead } from '../db/agent-times.js';
import { classifyAgent } from './classify.js';
import { endsCallsOn } from './decide.js';

/** A call that has reached its agent, as the watch sees it. */
export interface ReachedCall {
  readonly agentId: string;
  /** Ends the call (AgentGone); false when it was over already. */
  end(reason: string): boolean;
}

export interface CallWatchOptions {
  /** Where calls in flight are kept: each gives the calls that have reached their agent, now. */
  sources: ReadonlyArray<() => ReachedCall[]>;
  read(agentIds: readonly string[]): Promise<AgentTimesRead>;
  inactiveTimeoutMs: number;
  disconnectGraceMs: number;
  intervalMs: number;
  log: FastifyBaseLogger;
}

/** How often running calls' agents are read: half the inactive timeout, within 100 ms and 5 s. */
export function watchIntervalMs(inactiveTimeoutMs: number): number {
  return Math.min(5_000, Math.max(100, Math.round(inactiveTimeoutMs / 2)));
}

export class CallWatch {
  #timer: NodeJS.Timeout | undefined;
  #looking = false;
  #failing = false;

  constructor(private readonly options: CallWatchOptions) {}

  start(): void {
    this.#timer = setInterval(() => void this.look(), this.options.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** One look at the agents calls run on; resolves with how many calls it ended. */
  async look(): Promise<number> {
    const { sources, log } = this.options;
    if (this.#looking) return 0;
    // Only the calls that reached their agent before the read: the read is newer than theirs.
    const reached = sources.flatMap((source) => source());
    if (reached.length === 0) return 0;
    this.#looking = true;
    try {
      const read = await this.options.read([...new Set(reached.map((c) => c.agentId))]);
      this.#failing = false;
      const reasons = new Map<string, string | undefined>();
      let ended = 0;
      for (const call of reached) {
        if (!reasons.has(call.agentId)) {
          const agent = read.agents.get(call.agentId);
          const now = agent && { classification: classifyAgent(agent.times, read.nowMs, this.options.inactiveTimeoutMs), current: agent.current };
          reasons.set(call.agentId, endsCallsOn(now, this.options.disconnectGraceMs));
        }
        const reason = reasons.get(call.agentId);
        if (reason !== undefined && call.end(reason)) ended += 1;
      }
      if (ended > 0) log.info({ calls: ended }, 'ended calls in flight whose agent the gate would now refuse');
      return ended;
    } catch (error) {
      // The calls run on (their own bounds still hold); the next look tries again.
      if (!this.#failing) log.warn({ err: (error as Error).message }, 'could not read the agents of calls in flight');
      this.#failing = true;
      return 0;
    } finally {
      this.#looking = false;
    }
  }
}
