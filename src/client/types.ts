// The shapes of the gate's answers the client reads (contract §4.1), and the routes it calls. Each
// shape has a runtime table of its keys, checked by the type system to name exactly the type's
// keys, so that a test can hold them against the gate's /openapi.json.
import type { AgentStatus } from '../domain/agent.js';
import type { Problem } from '../domain/errors.js';
import type { AgentgateError } from './errors.js';

export type { AgentStatus };

export interface AgentInfo {
  id: string;
  name: string;
  status: AgentStatus;
  /** RFC 3339 times, null when not (yet) known. */
  firstConnectedAt: string | null;
  lastConnectedAt: string | null;
  /** The time since which the agent counts as disconnected. */
  disconnectedAt: string | null;
}

export interface ConnectionInfo {
  /** true when no dial was needed for this call. */
  cached: boolean;
  dialedAt: string;
  dialMs: number;
}

/** The body of `POST /workspaces/:id/conn`. */
export interface ConnResponse {
  workspaceId: string;
  agent: AgentInfo;
  connection: ConnectionInfo;
}

/** The body of `GET /workspaces/:id/agent`. */
export interface AgentResponse {
  workspaceId: string;
  agent: AgentInfo;
}

/** Exactly the keys of T: a missing key or an extra one does not compile. */
type KeysOf<T> = { readonly [K in keyof T]-?: true };

export const RESPONSE_KEYS = {
  conn: { workspaceId: true, agent: true, connection: true } satisfies KeysOf<ConnResponse>,
  agent: { workspaceId: true, agent: true } satisfies KeysOf<AgentResponse>,
  agentInfo: {
    id: true,
    name: true,
    status: true,
    firstConnectedAt: true,
    lastConnectedAt: true,
    disconnectedAt: true,
  } satisfies KeysOf<AgentInfo>,
  connection: { cached: true, dialedAt: true, dialMs: true } satisfies KeysOf<ConnectionInfo>,
} as const;

export const AGENT_STATUSES = { connecting: true, connected: true, disconnected: true, timeout: true } as const satisfies Record<AgentStatus, true>;

/** The members of a problem (contract §6), each of which AgentgateError carries. */
export const PROBLEM_KEYS = {
  type: true,
  title: true,
  status: true,
  detail: true,
  code: true,
  retryable: true,
  hint: true,
  workspaceId: true,
  agentId: true,
  agentStatus: true,
  disconnectedSeconds: true,
} as const satisfies KeysOf<Problem>;

// Every member of a problem is a property of AgentgateError (this line fails to compile otherwise).
type MissingOnError = Exclude<keyof Problem, keyof AgentgateError>;
const _everyProblemMemberOnError: [MissingOnError] extends [never] ? true : MissingOnError = true;

/** The methods the proxy route forwards. */
export const PROXY_METHODS = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'] as const;

/** The routes the client calls, in OpenAPI's spelling of paths. */
export const ROUTES = {
  conn: { method: 'POST', path: '/workspaces/{workspaceId}/conn' },
  agent: { method: 'GET', path: '/workspaces/{workspaceId}/agent' },
  proxy: { methods: PROXY_METHODS, path: '/workspaces/{workspaceId}/conn/{*}' },
} as const;

/** A route's path with its workspace filled in (and, for the proxy, the rest of the path). */
export function routePath(path: string, workspaceId: string, rest = ''): string {
  return path.replace('{workspaceId}', encodeURIComponent(workspaceId)).replace('{*}', rest);
}
