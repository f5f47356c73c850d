// An agent reached by dialing its address: one undici pool of keep-alive sockets to the agent,
// dialed once and shared; upgrades go on a socket of their own, opened by the same connector.
import { Pool } from 'undici';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { createConnector, neverConnected } from './connector.js';
import { ConnectAbandoned, RequestNotSent } from '../../domain/failures.js';
import type { GateSigningKey } from '../../auth/gate-signing-key.js';
import type { Config } from '../../config.js';
import type { AgentConnection, AgentRequest, AgentResponse, AgentTarget, UpgradeAnswer } from '../agent-transport.js';

export interface ConnectionOptions {
  /** This process's key: every request to the agent is signed with it (contract §4.1). */
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

export class HttpConnection implements AgentConnection {
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
  #awaitResponse(): () => void {
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

  request(request: AgentRequest): Promise<AgentResponse> {
    const responded = this.#awaitResponse();
    // An abandoned request waits for no socket: undici would settle it only once the socket it
    // is connecting has connected or failed.
    request.signal.addEventListener('abort', responded, { once: true });
    const sent = this.pool.request({
      method: request.method,
      path: request.path,
      headers: request.headers,
      body: request.body,
      signal: request.signal,
      // The caller's own timer is the bound; undici's ticks about once a second.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    return sent.then(
      (response) => {
        responded();
        request.signal.removeEventListener('abort', responded);
        return response;
      },
      (error: unknown) => {
        responded();
        request.signal.removeEventListener('abort', responded);
        // The pool had to open a new socket and could not: the request never left.
        if (!request.signal.aborted && neverConnected(error)) throw new RequestNotSent('a new connection to the agent could not be opened; nothing was sent', { cause: error });
        throw error;
      },
    );
  }

  upgrade(request: Omit<AgentRequest, 'body' | 'method'>): Promise<UpgradeAnswer> {
    const origin = new URL(this.origin);
    const connector = createConnector({ timeoutMs: this.connectTimeoutMs });
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        request.signal.removeEventListener('abort', onAbort);
        fn();
      };
      const sent: ClientRequest = (origin.protocol === 'https:' ? httpsRequest : httpRequest)({
        method: 'GET',
        path: request.path,
        // Node would derive Host from the (absent) host option, `localhost:80`; the connection
        // comes from our connector, so name the agent's own host and port.
        headers: { ...request.headers, host: origin.host },
        createConnection: (_opts, oncreate) => {
          connector(
            { hostname: origin.hostname, protocol: origin.protocol, port: origin.port },
            (error, socket) => (error ? oncreate(error, undefined as unknown as Duplex) : oncreate(null, socket)),
          );
          return undefined;
        },
      });
      const onAbort = () => {
        sent.destroy();
        settle(() => reject(request.signal.reason as Error));
      };
      if (request.signal.aborted) onAbort();
      else request.signal.addEventListener('abort', onAbort, { once: true });
      sent.once('upgrade', (response, socket, head) => settle(() => resolve({ kind: 'upgrade', response, socket, head })));
      sent.once('response', (response) => settle(() => resolve({ kind: 'response', response })));
      sent.once('error', (error) => {
        // As for proxied requests: a socket that never opened sent nothing.
        settle(() => reject(neverConnected(error) ? new RequestNotSent('a connection to the agent could not be opened; nothing was sent', { cause: error }) : error));
      });
      sent.end();
    });
  }

  /** An HTTP connection's requests fail one by one; it is never lost as a whole. */
  onLost(): () => void {
    return () => undefined;
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
