// The one rule of when work in flight ends (pure). Every kind of work (a proxied request or
// stream, an MCP call, a WebSocket) rests on the same authority: the token that sent it, the
// owner that token is confined to, the workspace, and, once the gate chose it, the agent and its
// build. It ends when that authority ends, or when the gate would refuse a new call on its agent
// at once; the answer it ends with is the one a new call would get.
// - `endsWork` reads a transition this replica wrote (trusted: it committed it);
// - `authorityEnded` reads the rows themselves, as they are now: after a notification from
//   elsewhere (a hint, never taken on its word), after notifications may have been lost, and on
//   a timer (no transition tells of heartbeats that stopped).
import type { Classification } from '../domain/agent.js';
import type { GateEvent } from '../domain/events.js';
import type { Ending } from '../domain/failures.js';
import { endsCallsOn } from './decide.js';

export interface Authority {
  /** The API token's id; null for one that cannot be revoked (the environment's admin token). */
  readonly tokenId: string | null;
  /** The owner the token is confined to; null when it sees every workspace. */
  readonly ownerScope: string | null;
  readonly workspaceId: string;
  /** The agent the work reached, once the gate chose it, and that agent's build. */
  readonly agentId: string | undefined;
  readonly buildId: string | undefined;
}

const REVOKED: Ending = { code: 'UNAUTHENTICATED', reason: 'its token was revoked' };
const DELETED: Ending = { code: 'WORKSPACE_NOT_FOUND', reason: 'its workspace was deleted' };
const OWNER_CHANGED: Ending = { code: 'WORKSPACE_NOT_FOUND', reason: "its workspace's owner is no longer the token's" };
const REPLACED: Ending = { code: 'AGENT_CONNECTION_LOST', reason: 'the workspace was stopped or rebuilt during the call' };
const GOODBYE: Ending = { code: 'AGENT_CONNECTION_LOST', reason: 'the agent said goodbye during the call' };

/** Pure: how a transition this replica wrote ends work resting on `a`, or undefined. */
export function endsWork(event: GateEvent, a: Authority): Ending | undefined {
  switch (event.kind) {
    case 'token_revoked':
      return a.tokenId !== null && event.tokenId === a.tokenId ? REVOKED : undefined;
    case 'workspace_deleted':
      return event.workspaceId === a.workspaceId ? DELETED : undefined;
    case 'workspace_owner_changed':
      return event.workspaceId === a.workspaceId && a.ownerScope !== null && a.ownerScope !== event.ownerId ? OWNER_CHANGED : undefined;
    case 'build_created':
      // Any other build (stop, delete, or a start with new agents) replaces the agent; its own
      // build, echoed back, does not. Work whose agent is not chosen yet meets the build in the
      // gate's own read.
      return event.workspaceId === a.workspaceId && a.agentId !== undefined && event.buildId !== a.buildId ? REPLACED : undefined;
    case 'agent_disconnected':
      return a.agentId !== undefined && event.agentId === a.agentId ? GOODBYE : undefined;
    case 'agent_connected':
    case 'agent_reconnected':
    case 'token_created':
      return undefined;
  }
}

/** The rows work rests on, read fresh (src/db/authority-read.ts). */
export interface AuthorityNow {
  /** The token is unrevoked (always, for one that cannot be revoked). */
  tokenLive: boolean;
  /** The workspace's owner; null when it is deleted or gone. */
  ownerId: string | null;
  /** The agent, classified by the database's clock, and whether it is still current; undefined when its row is gone. */
  agent: { classification: Classification; current: boolean } | undefined;
}

/** Pure: how what the rows say now ends work resting on `a`, or undefined while it holds. */
export function authorityEnded(now: AuthorityNow, a: Authority, disconnectGraceMs: number): Ending | undefined {
  if (!now.tokenLive) return REVOKED;
  if (now.ownerId === null) return DELETED;
  if (a.ownerScope !== null && now.ownerId !== a.ownerScope) return OWNER_CHANGED;
  if (a.agentId === undefined) return undefined;
  const reason = endsCallsOn(now.agent, disconnectGraceMs);
  return reason === undefined ? undefined : { code: 'AGENT_CONNECTION_LOST', reason };
}
