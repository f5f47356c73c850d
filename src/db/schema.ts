// Table types for Kysely (contract §2). Timestamps arrive as Date from pg.
import type { ColumnType, Generated } from 'kysely';

type CreatedAt = ColumnType<Date, Date | undefined, never>;
type NullableTime = ColumnType<Date | null, Date | null | undefined, Date | null>;

export interface WorkspacesTable {
  id: string;
  owner_id: string;
  name: string;
  created_at: CreatedAt;
  deleted_at: NullableTime;
}

export type Transition = 'start' | 'stop' | 'delete';

export interface WorkspaceBuildsTable {
  id: Generated<string>;
  workspace_id: string;
  build_number: number;
  transition: Transition;
  created_at: CreatedAt;
}

export interface WorkspaceAgentsTable {
  id: Generated<string>;
  build_id: string;
  name: string;
  address: string;
  display_order: Generated<number>;
  connection_timeout_seconds: Generated<number>;
  created_at: CreatedAt;
  first_connected_at: NullableTime;
  last_connected_at: NullableTime;
  disconnected_at: NullableTime;
  /** SHA-256 of the agent's token: how the agent's own calls are authenticated. */
  token_hash: Buffer;
}

export type TokenScope = 'admin' | 'conn';

export interface ApiTokensTable {
  id: Generated<string>;
  name: string;
  token_hash: Buffer;
  scope: TokenScope;
  owner_id: string | null;
  created_at: CreatedAt;
  revoked_at: NullableTime;
}

/** A gate process's public signing key (contract §4.1); the private key is never stored. */
export interface GateSigningKeysTable {
  kid: string;
  /** The raw 32 bytes of the Ed25519 public key. */
  public_key: Buffer;
  created_at: CreatedAt;
  expires_at: Date;
}

/** An MCP cancel for every replica to apply (the NOTIFY only says there are new ones). */
export interface McpCancelsTable {
  id: Generated<string>;
  /** The cancel key (token, endpoint, request id) in UTF-8: it holds NUL separators. */
  key: Buffer;
  reason: string;
  created_at: CreatedAt;
}

export interface Database {
  workspaces: WorkspacesTable;
  workspace_builds: WorkspaceBuildsTable;
  workspace_agents: WorkspaceAgentsTable;
  api_tokens: ApiTokensTable;
  gate_signing_keys: GateSigningKeysTable;
  mcp_cancels: McpCancelsTable;
}
