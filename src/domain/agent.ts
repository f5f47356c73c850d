// An agent's times as PostgreSQL stores them (epoch milliseconds with microsecond fractions) and
// the status they classify to (contract §3).

export type AgentStatus = 'connecting' | 'connected' | 'disconnected' | 'timeout';

export interface AgentTimes {
  createdAt: number;
  firstConnectedAt: number | null;
  lastConnectedAt: number | null;
  disconnectedAt: number | null;
  connectionTimeoutSeconds: number;
}

export type Classification =
  | { status: 'connecting' | 'timeout' | 'connected'; disconnectedAt: number | null }
  | {
      status: 'disconnected';
      /** The time since which the agent counts as disconnected, null when unknown. */
      disconnectedAt: number | null;
      /** `goodbye`: the agent said so (rule 2); `silence`: it stopped heartbeating (rule 3). */
      cause: 'goodbye' | 'silence';
      /** now − disconnectedAt, never negative; null when the start is unknown. */
      disconnectedForMs: number | null;
    };
