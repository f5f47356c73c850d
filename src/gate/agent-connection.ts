// A connection: one undici pool of keep-alive sockets to one agent, dialed once and shared.
import { Pool } from 'undici';
import { ConnectAbandoned, createConnector } from './connector.js';
import type { GateSigningKey } from '../auth/gate-signing-key.js';
import type { Config } from '../config.js';

export interface AgentTarget {
  agentId: string;
  workspaceId: string;
  /** The build the agent belongs to, when known: a notice of that same build spares it. */
  buildId?: string;
  address: string;
}

export interface ConnectionOptions {
  /** This process's key: every request to the agent is signed with it (SPEC 4.1). */
  signingKey: GateSigningKey;
  /** Bound on opening one socket to the agent. */
  connectTimeoutMs: number;
  /** How long a proxied request waits for response headers (undici's timer; ours is finer). */
  headersTimeoutMs: number;
  /** Most sockets open to one agent at once. */
  maxSockets?: number;
  /**
   * How long an idle socket is kept open when the agent names no keep-alive timeout of its
   * own, and the most kept when it names a longer one. undici's default (4 s) would leave a
   * cached connection without a socket most of the time, so each call would connect anew.
   */
  keepAliveMs?: number;
}

/** Default idle socket lifetime: the connection cache's own idle bound decides beyond it. */
export const DEFAULT_KEEP_ALIVE_MS = 300_000;

export type ConnectionPolicy = Omit<ConnectionOptions, 'signingKey'>;

/** How every connection to an agent connects and keeps its sockets, from the configuration. */
export function connectionPolicy(config: Pick<Config, 'dialTimeoutMs' | 'proxyHeadersTimeoutMs' | 'connIdleMs'>): ConnectionPolicy {
  return {
    // A socket opened later for a proxied request is bounded like the dial that opened the first.
    connectTimeoutMs: config.dialTimeoutMs,
    headersTimeoutMs: config.proxyHeadersTimeoutMs,
    // Sockets stay open as long as the cache keeps the connection, so a cached connection has
    // one ready instead of connecting anew on each call.
    keepAliveMs: config.connIdleMs,
  };
}

export class AgentConnection {
  readonly pool: Pool;
  readonly origin: string;
  /** The address's path without its trailing slash; proxied paths are appended to it. */
  readonly basePath: string;
  /** Bound on opening one socket to the agent (also for upgrades, which leave the pool). */
  readonly connectTimeoutMs: number;
  readonly #signingKey: GateSigningKey;
  dialedAt = new Date(0);
  dialMs = 0;
  #dialSignal: AbortSignal | undefined;
  #closing: Promise<void> | undefined;
  /** Proxied requests sent and not yet answered with headers. */
  #waiting = 0;
  /** Sockets still connecting, each with a way to give it up. */
  readonly #connecting = new Set<(reason: Error) => void>();

  constructor(
    readonly target: AgentTarget,
    options: ConnectionOptions,
  ) {
    const url = new URL(target.address);
    this.origin = url.origin;
    this.connectTimeoutMs = options.connectTimeoutMs;
    this.#signingKey = options.signingKey;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(this.origin, {
      connect: createConnector({
        timeoutMs: options.connectTimeoutMs,
        currentSignal: () => this.#dialSignal,
        track: (giveUp) => {
          this.#connecting.add(giveUp);
          return () => this.#connecting.delete(giveUp);
        },
      }),
      connections: options.maxSockets ?? 128,
      pipelining: 1,
      keepAliveTimeout: options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS,
      keepAliveMaxTimeout: options.keepAliveMs ?? DEFAULT_KEEP_ALIVE_MS,
      headersTimeout: options.headersTimeoutMs,
      // No body timeout: long streaming tool output is normal; the caller's own abort ends it.
      bodyTimeout: 0,
    });
  }

  get agentId(): string {
    return this.target.agentId;
  }

  /** The `x-agentgate-auth` value for a request to this agent, path and query as sent. */
  sign(method: string, pathAndQuery: string): string {
    return this.#signingKey.sign(this.target.agentId, method, pathAndQuery);
  }

  get closed(): boolean {
    return this.#closing !== undefined || this.pool.closed || this.pool.destroyed;
  }

  /** Sockets still connecting (observability, tests). */
  get connectingSockets(): number {
    return this.#connecting.size;
  }

  /** Sockets opened while `signal` is set are destroyed when it aborts (the dial phase). */
  setDialSignal(signal: AbortSignal | undefined): void {
    this.#dialSignal = signal;
  }

  /**
   * Marks one proxied request as waiting for its response; call the returned function once
   * it has its headers or has failed. undici does not give up a socket that is still
   * connecting when the request it was opened for is aborted (it waits for the connect to
   * settle), so when the last waiting request is gone, the sockets still connecting go too.
   */
  awaitResponse(): () => void {
    this.#waiting += 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#waiting -= 1;
      if (this.#waiting > 0 || this.#dialSignal !== undefined) return;
      for (const giveUp of [...this.#connecting]) giveUp(new ConnectAbandoned('nobody waits for this connection any more'));
    };
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
