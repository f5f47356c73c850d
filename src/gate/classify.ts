// Agent status as a pure function of the row and the database's clock (contract §3).
// Times are epoch milliseconds with microsecond fractions, as PostgreSQL stores them, so that
// "equal" means equal and not "within the same millisecond".
import type { AgentTimes, Classification } from '../domain/agent.js';

export function classifyAgent(agent: AgentTimes, now: number, inactiveTimeoutMs: number): Classification {
  // Rule 1: never connected.
  if (agent.firstConnectedAt === null) {
    const timeoutMs = agent.connectionTimeoutSeconds * 1000;
    const timedOut = agent.connectionTimeoutSeconds > 0 && now - agent.createdAt > timeoutMs;
    return { status: timedOut ? 'timeout' : 'connecting', disconnectedAt: agent.disconnectedAt };
  }
  // NULL counts as the zero time in the goodbye comparison.
  const last = agent.lastConnectedAt ?? Number.NEGATIVE_INFINITY;
  // Rule 2: a goodbye not older than the last connect (equal counts as disconnected).
  if (agent.disconnectedAt !== null && agent.disconnectedAt >= last) {
    return {
      status: 'disconnected',
      cause: 'goodbye',
      disconnectedAt: agent.disconnectedAt,
      disconnectedForMs: Math.max(0, now - agent.disconnectedAt),
    };
  }
  // Rule 3: silence longer than the inactive timeout.
  if (now - last > inactiveTimeoutMs) {
    return {
      status: 'disconnected',
      cause: 'silence',
      disconnectedAt: agent.lastConnectedAt,
      disconnectedForMs: agent.lastConnectedAt === null ? null : Math.max(0, now - agent.lastConnectedAt),
    };
  }
  return { status: 'connected', disconnectedAt: agent.disconnectedAt };
}

/** Whole seconds an agent has counted as disconnected, for problem bodies. */
export function disconnectedSeconds(c: Classification): number | undefined {
  return c.status === 'disconnected' && c.disconnectedForMs !== null
    ? Math.floor(c.disconnectedForMs / 1000)
    : undefined;
}
