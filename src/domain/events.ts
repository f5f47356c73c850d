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
