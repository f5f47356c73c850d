// The client's errors: one class per code of the catalogue (contract §6), all extending
// AgentgateError, and the reading of a gate's answer into one of them. The classes are checked
// against the catalogue at the type level, so a new code without its class does not compile.
import { CLIENT_ERROR_CODES, TRANSIENT_STATUSES, type ClientCodeEntry, type ClientErrorCode } from '../domain/client-codes.js';
import { errorClassName, type ErrorClassName } from '../domain/error-names.js';
import { ERROR_CATALOGUE, type ErrorCode } from '../domain/errors.js';

export { CLIENT_ERROR_CODES, type ClientErrorCode } from '../domain/client-codes.js';
export { errorClassName, type ErrorClassName } from '../domain/error-names.js';

/** What an AgentgateError is built from: a problem's members and what the response said around it. */
export interface AgentgateErrorInit {
  code: string;
  /** HTTP status of the answer; 0 when there was none (`GATE_UNREACHABLE`). */
  status: number;
  detail: string;
  type?: string | undefined;
  title?: string | undefined;
  retryable?: boolean | undefined;
  hint?: string | undefined;
  /** Seconds, from the Retry-After header. */
  retryAfter?: number | undefined;
  workspaceId?: string | undefined;
  agentId?: string | undefined;
  agentStatus?: string | undefined;
  disconnectedSeconds?: number | undefined;
  /** The gate's `x-request-id`, to find the request in its logs. */
  requestId?: string | undefined;
  /** The method of the call that failed, and whether it was a proxied tool call. */
  method?: string | undefined;
  proxied?: boolean | undefined;
  cause?: unknown;
}

function catalogueEntry(code: string): { status: number; retryable: boolean; title: string; hint?: string } | undefined {
  return Object.hasOwn(ERROR_CATALOGUE, code) ? ERROR_CATALOGUE[code as ErrorCode] : undefined;
}

/**
 * Every error the client throws for an answer of the gate (or for no answer). Branch on `code`
 * (or on the subclasses), never on the message; relay `hint` to the model.
 */
export class AgentgateError extends Error {
  /** The catalogue code, a client code, or a code newer than this client. */
  readonly code: ErrorCode | ClientErrorCode | (string & {});
  readonly status: number;
  readonly type: string;
  readonly title: string;
  readonly detail: string;
  /** The condition is transient: the same call may succeed later. */
  readonly retryable: boolean;
  /** One sentence for an LLM to relay to the user: what happened and what to do. */
  readonly hint: string | undefined;
  /** Seconds to wait before trying again, from the Retry-After header. */
  readonly retryAfter: number | undefined;
  readonly workspaceId: string | undefined;
  readonly agentId: string | undefined;
  readonly agentStatus: string | undefined;
  readonly disconnectedSeconds: number | undefined;
  readonly requestId: string | undefined;
  readonly method: string | undefined;
  /** The error answered a proxied tool call (`request()`), which may have reached the agent. */
  readonly proxied: boolean;

  constructor(init: AgentgateErrorInit) {
    super(`${init.code}: ${init.detail}`, init.cause === undefined ? undefined : { cause: init.cause });
    const known = catalogueEntry(init.code);
    const client: ClientCodeEntry | undefined = Object.hasOwn(CLIENT_ERROR_CODES, init.code)
      ? CLIENT_ERROR_CODES[init.code as ClientErrorCode]
      : undefined;
    this.name = 'AgentgateError';
    this.code = init.code;
    this.status = init.status;
    this.type = init.type ?? `urn:agentgate:error:${init.code.toLowerCase().replaceAll('_', '-')}`;
    this.title = init.title ?? known?.title ?? init.code;
    this.detail = init.detail;
    this.retryable = init.retryable ?? known?.retryable ?? client?.retryable ?? TRANSIENT_STATUSES.has(init.status);
    this.hint = init.hint ?? known?.hint ?? client?.hint;
    this.retryAfter = init.retryAfter;
    this.workspaceId = init.workspaceId;
    this.agentId = init.agentId;
    this.agentStatus = init.agentStatus;
    this.disconnectedSeconds = init.disconnectedSeconds;
    this.requestId = init.requestId;
    this.method = init.method;
    this.proxied = init.proxied ?? false;
  }
}

/** The class of one catalogue code: its instances carry that code. */
export interface ErrorClass<C extends ErrorCode> {
  new (init: Omit<AgentgateErrorInit, 'code'>): AgentgateError & { readonly code: C; readonly name: ErrorClassName<C> };
  readonly code: C;
}

function coded<C extends ErrorCode>(code: C) {
  const name = errorClassName(code);
  return class extends AgentgateError {
    static readonly code: C = code;
    declare readonly code: C;
    declare readonly name: ErrorClassName<C>;
    constructor(init: Omit<AgentgateErrorInit, 'code'>) {
      super({ ...init, code });
      this.name = name;
    }
  };
}

export class InvalidRequestError extends coded('INVALID_REQUEST') {}
export class UnauthenticatedError extends coded('UNAUTHENTICATED') {}
export class ForbiddenError extends coded('FORBIDDEN') {}
export class WorkspaceNotFoundError extends coded('WORKSPACE_NOT_FOUND') {}
export class AgentNotFoundError extends coded('AGENT_NOT_FOUND') {}
export class NotFoundError extends coded('NOT_FOUND') {}
export class WorkspaceHasNoAgentError extends coded('WORKSPACE_HAS_NO_AGENT') {}
export class AgentDisconnectedError extends coded('AGENT_DISCONNECTED') {}
export class AgentNeverConnectedError extends coded('AGENT_NEVER_CONNECTED') {}
export class WorkspaceChangedError extends coded('WORKSPACE_CHANGED') {}
export class PayloadTooLargeError extends coded('PAYLOAD_TOO_LARGE') {}
export class RateLimitedError extends coded('RATE_LIMITED') {}
export class AgentUnreachableError extends coded('AGENT_UNREACHABLE') {}
export class AgentConnectionLostError extends coded('AGENT_CONNECTION_LOST') {}
export class DatabaseUnavailableError extends coded('DATABASE_UNAVAILABLE') {}
export class ShuttingDownError extends coded('SHUTTING_DOWN') {}
export class NotReadyError extends coded('NOT_READY') {}
export class OverloadedError extends coded('OVERLOADED') {}
export class AgentDialTimeoutError extends coded('AGENT_DIAL_TIMEOUT') {}
export class AgentResponseTimeoutError extends coded('AGENT_RESPONSE_TIMEOUT') {}
export class InternalError extends coded('INTERNAL') {}

/**
 * Every class, under its own name. The type says: one class for each catalogue code, named after
 * it, and nothing else; adding a code to the catalogue without its class here fails to compile.
 */
export const ERROR_CLASSES = {
  InvalidRequestError,
  UnauthenticatedError,
  ForbiddenError,
  WorkspaceNotFoundError,
  AgentNotFoundError,
  NotFoundError,
  WorkspaceHasNoAgentError,
  AgentDisconnectedError,
  AgentNeverConnectedError,
  WorkspaceChangedError,
  PayloadTooLargeError,
  RateLimitedError,
  AgentUnreachableError,
  AgentConnectionLostError,
  DatabaseUnavailableError,
  ShuttingDownError,
  NotReadyError,
  OverloadedError,
  AgentDialTimeoutError,
  AgentResponseTimeoutError,
  InternalError,
} as const satisfies { [C in ErrorCode as ErrorClassName<C>]: ErrorClass<C> };

const CLASS_BY_CODE = new Map<string, ErrorClass<ErrorCode>>(Object.values(ERROR_CLASSES).map((cls) => [cls.code, cls as ErrorClass<ErrorCode>]));

/** The class of a catalogue code; undefined for a code this client does not know. */
export function errorClassFor(code: string): ErrorClass<ErrorCode> | undefined {
  return CLASS_BY_CODE.get(code);
}

/** The error for a code: its own class when the client knows the code, AgentgateError otherwise. */
export function agentgateError(init: AgentgateErrorInit): AgentgateError {
  const cls = errorClassFor(init.code);
  return cls ? new cls(init) : new AgentgateError(init);
}
