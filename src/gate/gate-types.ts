// What a call asks of the gate and what it is given back (contract §5).
import type { Context } from '@opentelemetry/api';
import type { FastifyBaseLogger } from 'fastify';
import type { CurrentAgent } from '../db/gate-read.js';
import type { Classification } from '../domain/agent.js';
import type { Lease } from './conn-cache.js';

export interface GateRequest {
  workspaceId: string;
  agentName?: string | undefined;
  /** The owner a conn token is confined to, or null. */
  ownerScope: string | null;
  /** Aborted (with CallerGone) when the caller goes away. */
  signal: AbortSignal;
  log: FastifyBaseLogger;
  /**
   * When the call began (performance.now() time; its token check included). The whole call is
   * bounded by the dial bound plus twice the database bound from then (contract §5 step 9).
   */
  startedAt?: number;
  /**
   * The trace the call belongs to (the request's server span) when tracing is on: the gate's
   * spans are made under it. Null or absent: none is made.
   */
  trace?: Context | null | undefined;
}

/** A status read: no dial, no caller to watch. */
export type StatusRequest = Omit<GateRequest, 'signal' | 'log'>;

export interface GateSuccess {
  workspaceId: string;
  /** The workspace's owner, as read (what is kept from the call may be shown to that owner only). */
  ownerId: string;
  /** The row read for this call (for a degraded answer, the last one read). */
  agent: CurrentAgent;
  classification: Classification;
  /** The caller must release it when done with the connection. */
  lease: Lease;
  /** No dial was made for this call. */
  cached: boolean;
  /** Served on a cached connection because the database could not be read. */
  degraded: boolean;
}

export interface AgentStatusRead {
  agent: CurrentAgent;
  classification: Classification;
}

/** One read of a (workspace, agent name), classified. */
export interface Snapshot {
  ownerId: string;
  agent: CurrentAgent;
  classification: Classification;
}
