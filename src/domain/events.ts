// State transitions every replica must learn of (contract §5 step 13): what the NOTIFY channel
// carries and what the caches and the work in flight act on. A notification is a hint, not a
// command: anyone who can connect to the database can send one, so what arrives is checked
// against this schema (anything else is `undefined`, counted and ignored), and nothing is ended
// on its word alone (src/gate/in-flight.ts reads the rows first).
import { canonicalId } from './names.js';

export type GateEvent =
  | { kind: 'agent_connected'; workspaceId: string; agentId: string }
  | { kind: 'agent_reconnected'; workspaceId: string; agentId: string }
  | { kind: 'agent_disconnected'; workspaceId: string; agentId: string }
  | { kind: 'build_created'; workspaceId: string; buildId: string }
  | { kind: 'workspace_deleted'; workspaceId: string }
  | { kind: 'workspace_owner_changed'; workspaceId: string; ownerId: string }
  | { kind: 'token_created'; tokenId: string }
  | { kind: 'token_revoked'; tokenId: string };

export type GateEventKind = GateEvent['kind'];

/** Each kind and the id fields it carries: the whole schema of a notification. */
const FIELDS: { readonly [K in GateEventKind]: ReadonlyArray<Exclude<keyof Extract<GateEvent, { kind: K }>, 'kind'>> } = {
  agent_connected: ['workspaceId', 'agentId'],
  agent_reconnected: ['workspaceId', 'agentId'],
  agent_disconnected: ['workspaceId', 'agentId'],
  build_created: ['workspaceId', 'buildId'],
  workspace_deleted: ['workspaceId'],
  workspace_owner_changed: ['workspaceId', 'ownerId'],
  token_created: ['tokenId'],
  token_revoked: ['tokenId'],
};

export const EVENT_KINDS = Object.keys(FIELDS) as GateEventKind[];

/**
 * Pure: the event a notification's JSON payload carries, with canonical ids; `undefined` for
 * anything that is not exactly one (an unknown kind, a missing or malformed id, extra fields).
 */
export function parseGateEvent(value: unknown): GateEvent | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const given = value as Record<string, unknown>;
  const kind = given.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(FIELDS, kind)) return undefined;
  const fields = FIELDS[kind as GateEventKind] as readonly string[];
  if (Object.keys(given).length !== fields.length + 1) return undefined;
  const event: Record<string, string> = { kind };
  for (const field of fields) {
    const id = canonicalId(given[field]);
    if (id === undefined) return undefined;
    event[field] = id;
  }
  return event as GateEvent;
}

/**
 * A caller's `notifications/cancelled` that matched no MCP call on the replica that received it:
 * recorded for every replica (the call may run on another), each applying it to its own calls.
 */
export interface CancelNotice {
  /** The call's cancel key: token, endpoint and request id (no secret: ids only). */
  key: string;
  reason: string;
}
