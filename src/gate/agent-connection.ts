// A connection: one undici pool of keep-alive sockets to one agent, dialed once and shared.
import { Pool } from 'undici';
import { createConnector } from './connector.js';

export interface AgentTarget {
  agentId: string;
  workspaceId: string;
  /** The build the agent belongs to, when known: a notice of that same build spares it. */
  buildId?: string;
  address: string;
  /** SHA-256 of the agent's token: the key the gate signs its requests with. */
  tokenHash: Buffer;
}

export interface ConnectionOptions {
  /** Bound on opening one socket to the agent. */
  connectTimeoutMs: number;
  /** How long a proxied request waits for response headers (undici's timer; ours is finer). */
  headersTimeoutMs: number;
  /** Most sockets open to one agent at once. */
  maxSockets?: number;
}

export class AgentConnection {
  readonly pool: Pool;
  readonly origin: string;
  /** The address's path without its trailing slash; proxied paths are appended to it. */
  readonly basePath: string;
  /** Bound on opening one socket to the agent (also for upgrades, which leave the pool). */
  readonly connectTimeoutMs: number;
  dialedAt = new Date(0);
  dialMs = 0;
  #dialSignal: AbortSignal | undefined;
  #closing: Promise<void> | undefined;

  constructor(
    readonly target: AgentTarget,
    options: ConnectionOptions,
  ) {
    const url = new URL(target.address);
    this.origin = url.origin;
    this.connectTimeoutMs = options.connectTimeoutMs;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(this.origin, {
      connect: createConnector({ timeoutMs: options.connectTimeoutMs, currentSignal: () => this.#dialSignal }),
      connections: options.maxSockets ?? 128,
      pipelining: 1,
      headersTimeout: options.headersTimeoutMs,
      // No body timeout: long streaming tool output is normal; the caller's own abort ends it.
      bodyTimeout: 0,
    });
  }

  get agentId(): string {
    return this.target.agentId;
  }

  get closed(): boolean {
    return this.#closing !== undefined || this.pool.closed || this.pool.destroyed;
  }

  /** Sockets opened while `signal` is set are destroyed when it aborts (the dial phase). */
  setDialSignal(signal: AbortSignal | undefined): void {
    this.#dialSignal = signal;
  }

  /** Closes gracefully: requests in flight finish, then the sockets close. */
  close(): Promise<void> {
    return (this.#closing ??= this.pool.close().catch(() => undefined));
  }

  /** Closes at once, failing requests in flight. */
  destroy(): Promise<void> {
    this.#closing ??= Promise.resolve();
    return this.pool.destroy().catch(() => undefined);
  }
}
