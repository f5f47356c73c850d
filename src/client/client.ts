// The client of a chat server: `conn`, `agent`, proxied tool calls and WebSockets, over Node's
// global fetch and WebSocket, with the gate's refusals thrown as typed errors.
import { errorFromAnswer, headRefusal, isAgentAnswer, isProblemContentType, unexpectedAnswer, type CallContext } from './answers.js';
import { AgentgateError, InvalidRequestError } from './errors.js';
import { toolPath, workspaceIdProblem } from './paths.js';
import { ROUTES, routePath, type AgentResponse, type ConnResponse } from './types.js';

/** The part of the standard WebSocket the client uses; the object handed back is the real one. */
export interface WebSocketLike {
  readonly readyState: number;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: SocketListener, options?: { once?: boolean }): void;
  removeEventListener(type: string, listener: SocketListener): void;
}

// The standard listener types (Event, MessageEvent) are not in Node 20's types, and every
// WebSocket implementation's own listener must be assignable to this one: a method's parameter
// is compared both ways, so `(event: MessageEvent) => void` fits `unknown`.
type SocketListener = { listener(event: unknown): void }['listener'];

/** A WebSocket class taking Node's (undici's) init: `new WebSocket(url, { protocols, headers })`. */
export type WebSocketClass<W extends WebSocketLike = WebSocketLike> = new (
  url: string,
  init: { protocols?: string | string[]; headers: Record<string, string> },
) => W;

export interface ClientOptions<W extends WebSocketLike = WebSocketLike> {
  /** agentgate's URL, e.g. `http://agentgate:8080` (a path prefix is kept; no query or fragment). */
  baseUrl: string | URL;
  /** A token of scope `conn` (or `admin`); sent as `Authorization: Bearer`, never logged. */
  token: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch | undefined;
  /** Defaults to the global WebSocket (Node 22 and later). */
  WebSocket?: WebSocketClass<W> | undefined;
}

export interface CallOptions {
  /** A current agent by name; without it, the workspace's first agent. */
  agent?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface ConnResult extends ConnResponse {
  /** The gate answered from a cached connection because its database could not be read. */
  degraded: boolean;
}

export type AgentResult = AgentResponse;

/** A request body: anything fetch takes, a web ReadableStream, or a Node stream (any async iterable of bytes). */
export type ProxyBody = RequestInit['body'] | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

export interface ProxyRequestInit extends Omit<RequestInit, 'body' | 'duplex' | 'signal' | 'redirect'> {
  body?: ProxyBody;
  agent?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface WebSocketOptions extends CallOptions {
  protocols?: string | string[] | undefined;
}

/** The agent selection header of the proxy route (contract §2); the gate removes it before forwarding. */
const AGENT_HEADER = 'x-agentgate-agent';

export class AgentgateClient<W extends WebSocketLike = WebSocketLike> {
  readonly baseUrl: string;
  // Private fields stay out of util.inspect, JSON and errors: the token is never shown.
  readonly #token: string;
  readonly #fetch: typeof fetch;
  readonly #WebSocket: WebSocketClass<W> | undefined;

  constructor(options: ClientOptions<W>) {
    if (typeof options.token !== 'string' || options.token === '') throw new TypeError('agentgate/client: a token is required');
    // Visible ASCII only, checked here: Headers.set would otherwise throw on every call, quoting
    // `Bearer <token>` in its message. This message must not show the token either.
    if (!/^[\x21-\x7e]+$/.test(options.token)) {
      throw new TypeError('agentgate/client: the token may hold only visible ASCII characters (no spaces, line breaks or other characters)');
    }
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw new TypeError('agentgate/client: no fetch: pass one as createClient({ fetch })');
    const baseUrl = String(options.baseUrl).replace(/\/+$/, '');
    // Every URL is built on it and checked to stay under its routes: it must parse, with nothing after its path.
    if (!URL.canParse(baseUrl) || !/^https?:$/.test(new URL(baseUrl).protocol) || /[?#]/.test(baseUrl)) {
      throw new TypeError('agentgate/client: baseUrl must be an http: or https: URL without query or fragment');
    }
    this.baseUrl = baseUrl;
    this.#token = options.token;
    this.#fetch = fetchImpl;
    this.#WebSocket = options.WebSocket;
  }

  /** `POST /workspaces/:id/conn`: a live connection to the agent, dialed or cached, or the gate's typed error. */
  async conn(workspaceId: string, options: CallOptions = {}): Promise<ConnResult> {
    const { response, body } = await this.#json<ConnResponse>(ROUTES.conn.method, ROUTES.conn.path, workspaceId, options);
    return { ...body, degraded: response.headers.has('x-agentgate-degraded') };
  }

  /** `GET /workspaces/:id/agent`: the agent's status, without dialing. */
  async agent(workspaceId: string, options: CallOptions = {}): Promise<AgentResult> {
    const { body } = await this.#json<AgentResponse>(ROUTES.agent.method, ROUTES.agent.path, workspaceId, options);
    return body;
  }

  /**
   * A tool call proxied to `<agent address>/<path>`. The agent's answer, whatever its status, is
   * returned as the Response (its body a stream); the gate's own refusals are thrown as typed
   * errors. Redirects are not followed: an agent's 3xx is its answer. `path` is relative to the
   * agent's base path; one the gate would refuse (dot segments, encoded slashes, backslashes) is
   * refused here, sending nothing, as INVALID_REQUEST with status 0. An answer without
   * `x-agentgate-upstream: agent` that is not the gate's problem+json (a login page in between,
   * even with a 200) is `UNEXPECTED_RESPONSE`.
   *
   * A HEAD the gate refuses has no body, so its code cannot be read: it is thrown as
   * `UNEXPECTED_RESPONSE` with the refusal's status and Retry-After, retryable when the status
   * is 429, 502, 503 or 504. The same call as GET, or `agent()`, tells the reason.
   */
  async request(workspaceId: string, path: string, init: ProxyRequestInit = {}): Promise<Response> {
    const { agent, signal, body, headers: given, ...rest } = init;
    const method = (rest.method ?? 'GET').toUpperCase();
    const call: CallContext = { method, proxied: true, workspaceId };
    const headers = this.#headers(given);
    if (agent !== undefined) headers.set(AGENT_HEADER, agent);
    const target = toolPath(path);
    if (!target.ok) throw notSent(call, target.reason);
    const url = this.#url(ROUTES.proxy.path, call, target.rest);
    const hasBody = body !== undefined && body !== null;
    const response = await this.#send(
      url,
      {
        ...rest,
        method,
        headers,
        signal: signal ?? null,
        redirect: 'manual',
        // A stream body needs half duplex in Node's fetch; it is harmless for the others.
        ...(hasBody ? { body: body as RequestInit['body'], duplex: 'half' as const } : {}),
      },
      call,
      signal,
    );
    if (isAgentAnswer(response.headers)) return response;
    // Not the agent's answer, whatever its status: the gate's refusal, or something in between
    // (a login page answered with a 200) that must not pass for the tool's result.
    if (!isProblemContentType(response.headers.get('content-type'))) {
      await discard(response);
      throw unexpectedAnswer(
        response,
        call,
        Date.now(),
        `HTTP ${response.status} (${response.headers.get('content-type') ?? 'no content type'}) has neither ` +
          '`x-agentgate-upstream: agent` (the agent’s answer) nor a problem+json with a code (agentgate’s)',
      );
    }
    if (method === 'HEAD') throw headRefusal(response, call, Date.now());
    const text = await this.#text(response, call, signal);
    throw errorFromAnswer({ status: response.status, headers: response.headers, text }, call, Date.now());
  }

  /**
   * A WebSocket to `<agent address>/<path>` through the gate, open. The gate is asked first with
   * `conn()`, so its refusals arrive as typed errors (the standard WebSocket tells nothing of a
   * refused upgrade). An upgrade refused after that asks `conn()` again: its typed error when it
   * now refuses, otherwise `UPGRADE_FAILED` (retryable: a limit of the gate or of the agent).
   */
  async websocket(workspaceId: string, path: string, options: WebSocketOptions = {}): Promise<W> {
    const Ctor = this.#WebSocket ?? (globalThis as unknown as { WebSocket?: WebSocketClass<W> }).WebSocket;
    if (Ctor === undefined) {
      const version = (globalThis as { process?: { version?: string } }).process?.version ?? 'unknown';
      throw new Error(
        `agentgate/client: WebSocket needs Node 22 or later, where it is built in (this is Node ${version}); ` +
          'or pass a WebSocket class, such as undici’s, as createClient({ WebSocket })',
      );
    }
    const { signal } = options;
    const target = toolPath(path);
    if (!target.ok) throw notSent({ method: 'GET', proxied: true, workspaceId }, target.reason);
    const url = this.#url(ROUTES.proxy.path, { method: 'GET', proxied: true, workspaceId }, target.rest).replace(/^http/, 'ws');
    await this.conn(workspaceId, { agent: options.agent, signal });
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}` };
    if (options.agent !== undefined) headers[AGENT_HEADER] = options.agent;
    signal?.throwIfAborted();
    const socket = new Ctor(url, { headers, ...(options.protocols === undefined ? {} : { protocols: options.protocols }) });
    const opened = await new Promise<boolean>((resolve, reject) => {
      const done = () => {
        socket.removeEventListener('open', onOpen);
        socket.removeEventListener('error', onFail);
        socket.removeEventListener('close', onFail);
        signal?.removeEventListener('abort', onAbort);
      };
      const onOpen = () => {
        done();
        resolve(true);
      };
      const onFail = () => {
        done();
        resolve(false);
      };
      const onAbort = () => {
        done();
        socket.close();
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- an abort surfaces as the signal's own reason, as with fetch
        reject(signal!.reason);
      };
      socket.addEventListener('open', onOpen);
      socket.addEventListener('error', onFail);
      socket.addEventListener('close', onFail);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    if (opened) return socket;
    // The upgrade is a second call to the gate, which may refuse it too (the per-token WebSocket
    // cap, draining, a goodbye since conn()); the standard WebSocket does not say who refused or
    // why. Asking conn() again turns a refusal that lasts into its typed error.
    await this.conn(workspaceId, { agent: options.agent, signal });
    throw new AgentgateError({
      code: 'UPGRADE_FAILED',
      status: 0,
      detail: 'the WebSocket upgrade was refused after conn() succeeded, and conn() still succeeds: the gate (a WebSocket cap) or the agent refused it',
      workspaceId,
      method: 'GET',
      proxied: true,
    });
  }

  /**
   * The URL of a route of the workspace, with `rest` (a checked tool path) on the proxy route.
   * Throws INVALID_REQUEST, having sent nothing, when the workspace id is not one segment or the
   * URL as it would be sent leaves the route.
   */
  #url(route: string, call: CallContext, rest?: string): string {
    const problem = workspaceIdProblem(call.workspaceId);
    if (problem !== undefined) throw notSent(call, problem);
    const workspaceId = call.workspaceId as string;
    const url = new URL(this.baseUrl + routePath(route, workspaceId, rest ?? ''));
    // A second guard, in case the checks above missed a way out: what fetch sends is this URL
    // as parsed, dot segments resolved, and it must still be under the route.
    const under = new URL(this.baseUrl + routePath(route, workspaceId)).pathname;
    if (rest === undefined ? url.pathname !== under : !url.pathname.startsWith(under)) throw notSent(call, 'the URL would leave the route');
    return url.href;
  }

  #headers(given?: ConstructorParameters<typeof Headers>[0]): Headers {
    const headers = new Headers(given);
    headers.set('authorization', `Bearer ${this.#token}`);
    return headers;
  }

  async #json<T>(method: string, route: string, workspaceId: string, options: CallOptions): Promise<{ response: Response; body: T }> {
    const { signal } = options;
    const call: CallContext = { method, proxied: false, workspaceId };
    const query = options.agent === undefined ? '' : `?agent=${encodeURIComponent(options.agent)}`;
    const headers = this.#headers({ accept: 'application/json' });
    const response = await this.#send(
      this.#url(route, call) + query,
      { method, headers, signal: signal ?? null, redirect: 'manual' },
      call,
      signal,
    );
    const text = await this.#text(response, call, signal);
    if (response.status !== 200) throw errorFromAnswer({ status: response.status, headers: response.headers, text }, call, Date.now());
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const agent = (body as { agent?: unknown } | null)?.agent;
    if (typeof body !== 'object' || body === null || typeof agent !== 'object' || agent === null) {
      throw unexpectedAnswer(response, call, Date.now(), `HTTP ${response.status} from ${method} ${route} is not the documented JSON body`);
    }
    return { response, body: body as T };
  }

  /** fetch, with an abort surfacing as the signal's reason and no answer as `GATE_UNREACHABLE`. */
  async #send(url: string, init: RequestInit, call: CallContext, signal: AbortSignal | undefined): Promise<Response> {
    try {
      return await this.#fetch(url, init);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw unreachable(error, call);
    }
  }

  async #text(response: Response, call: CallContext, signal: AbortSignal | undefined): Promise<string> {
    try {
      return await response.text();
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw unreachable(error, call);
    }
  }
}

/** Lets go of a body the client will not read (it may be large, or never end). */
async function discard(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // Already broken or consumed: nothing is held either way.
  }
}

/** A call the client refuses before sending anything: status 0, as no answer was given. */
function notSent(call: CallContext, reason: string): InvalidRequestError {
  return new InvalidRequestError({
    status: 0,
    detail: `agentgate/client did not send the call: ${reason}`,
    workspaceId: call.workspaceId,
    method: call.method,
    proxied: call.proxied,
  });
}

function unreachable(error: unknown, call: CallContext): AgentgateError {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | undefined)?.cause;
  const why = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : String((error as Error)?.message ?? error);
  return new AgentgateError({
    code: 'GATE_UNREACHABLE',
    status: 0,
    detail: `no answer from agentgate (${why})`,
    cause: error,
    workspaceId: call.workspaceId,
    method: call.method,
    proxied: call.proxied,
  });
}

export function createClient<W extends WebSocketLike = WebSocketLike>(options: ClientOptions<W>): AgentgateClient<W> {
  return new AgentgateClient(options);
}
