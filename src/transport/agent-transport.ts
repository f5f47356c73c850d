// How the gate reaches an agent: the one seam every user of a connection goes through (the gate's
// dial, the proxy, WebSocket upgrades, the MCP client), so that a second way of reaching agents
// (a tunnel the agent opened) plugs in beside the HTTP dial without touching them.
import type { Dispatcher } from 'undici';
import type { IncomingMessage } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { TraceHeaders } from '../tracing/trace-context.js';

/** The agent a connection leads to, as the gate read it. */
export interface AgentTarget {
  agentId: string;
  workspaceId: string;
  /** The build the agent belongs to, when known: a notice of that same build spares it. */
  buildId?: string;
  address: string;
}

export interface OpenOptions {
  /** The open's own bound: past it, it fails with DialFailure('timeout'). */
  timeoutMs: number;
  /** Aborted (with DialAbandoned) when nobody waits for the open any more. */
  signal: AbortSignal;
  /** The trace context of the call that started the open (tracing on). */
  trace?: TraceHeaders | undefined;
}

/**
 * Opens connections to agents. `open` resolves once the agent answered its health check
 * (contract §5 step 5), and rejects with DialFailure (unreachable, timeout or cancelled).
 */
export interface AgentTransport {
  open(target: AgentTarget, options: OpenOptions): Promise<AgentConnection>;
}

export interface AgentRequest {
  method: string;
  /** Path and query as sent, the connection's base path included. */
  path: string;
  headers: Record<string, string | string[]>;
  body: Readable | null;
  /** Ends the request in any phase; the request then rejects with this signal's reason. */
  signal: AbortSignal;
}

export interface AgentResponse {
  statusCode: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Readable;
}

export type UpgradeAnswer =
  | { kind: 'upgrade'; response: IncomingMessage; socket: Duplex; head: Buffer }
  | { kind: 'response'; response: IncomingMessage };

/** A live connection to one agent, cached and shared by the calls to that agent. */
export interface AgentConnection {
  readonly target: AgentTarget;
  readonly agentId: string;
  /** The address's path without its trailing slash; proxied paths are appended to it. */
  readonly basePath: string;
  /** When the open that made it completed, and how long it took. */
  readonly dialedAt: Date;
  readonly dialMs: number;
  /** Closed or closing: it takes no new request. */
  readonly closed: boolean;
  /** The `x-agentgate-auth` value for a request to this agent, path and query as sent. */
  sign(method: string, pathAndQuery: string): string;
  /**
   * Sends one request and resolves at the response's headers. A request none of whose bytes can
   * have reached the agent (no socket could be opened) rejects with RequestNotSent; a request
   * aborted through its signal rejects with the signal's reason.
   */
  request(request: AgentRequest): Promise<AgentResponse>;
  /**
   * Sends an upgrade request (a WebSocket's) on a stream of its own, and resolves with the 101
   * and its stream, or with the agent's other answer. It rejects as `request` does; its bound
   * is the caller's (the signal).
   */
  upgrade(request: Omit<AgentRequest, 'body' | 'method'>): Promise<UpgradeAnswer>;
  /**
   * Told once when the connection is lost as a whole (a tunnel that closed), so that what runs
   * on it ends at once. A connection whose requests fail one by one (HTTP: a socket per
   * request) reports through those requests instead, and never calls it. Returns the unsubscribe.
   */
  onLost(listener: (reason: Error) => void): () => void;
  /** Closes gracefully: requests in flight finish, then the connection closes. */
  close(): Promise<void>;
  /** Closes at once, failing requests in flight. */
  destroy(): Promise<void>;
}
