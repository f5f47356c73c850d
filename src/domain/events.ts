// State transitions every replica must learn of (SPEC 5 step 13): what the NOTIFY channel
// carries and what the caches (tokens, connections, tunnels) act on.

export type GateEvent =
  | { kind: 'agent_connected'; workspaceId: string; agentId: string }
  | { kind: 'agent_reconnected'; workspaceId: string; agentId: string }
  | { kind: 'agent_disconnected'; workspaceId: string; agentId: string }
  | { kind: 'build_created'; workspaceId: string; buildId: string }
  | { kind: 'workspace_deleted'; workspaceId: string }
  | { kind: 'token_created'; tokenId: string }
  | { kind: 'token_revoked'; tokenId: string };

/**
 * A caller's `notifications/cancelled` that matched no MCP call on the replica that received it:
 * sent to every replica (the call may run on another), each applying it to its own calls.
 */
export interface CancelNotice {
  /** The call's cancel key: token, endpoint and request id (no secret: ids only). */
  key: string;
  reason: string;
}
