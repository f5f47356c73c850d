// Reading the gate's answers (pure): which answers are the gate's own problems, which are the
// agent's, and the error each problem becomes.
import { agentgateError, AgentgateError } from './errors.js';

/** Proxied answers the agent wrote carry this header (contract §4.1); the gate strips it from agents. */
export const UPSTREAM_HEADER = 'x-agentgate-upstream';

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

/** What the failed call was, for the error's `method`, `proxied` and `workspaceId`. */
export interface CallContext {
  method: string;
  proxied: boolean;
  workspaceId?: string | undefined;
}

/** The agent's own answer to a proxied call, which the client hands back untouched. */
export function isAgentAnswer(headers: Headers): boolean {
  return headers.get(UPSTREAM_HEADER)?.trim().toLowerCase() === 'agent';
}

export function isProblemContentType(value: string | null): boolean {
  return (value ?? '').split(';')[0]!.trim().toLowerCase() === 'application/problem+json';
}

/** Retry-After in seconds: delta-seconds, or an HTTP date counted from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  // A bare number that is not an integer is not a date either (Date.parse would read "1.5" as one).
  if (Number.isNaN(at) || /^[\d.+-]+$/.test(text)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The error for an answer that is not a success: the code's own class for a problem+json with a
 * `code` (plain AgentgateError for a code this client does not know), `UNEXPECTED_RESPONSE` for
 * anything else.
 */
export function errorFromAnswer(answer: Answer, call: CallContext, now: number): AgentgateError {
  const around = {
    status: answer.status,
    retryAfter: parseRetryAfter(answer.headers.get('retry-after'), now),
    requestId: answer.headers.get('x-request-id') ?? undefined,
    method: call.method,
    proxied: call.proxied,
  };
  const problem = isProblemContentType(answer.headers.get('content-type')) ? parseJsonObject(answer.text) : undefined;
  const code = str(problem?.code);
  if (problem === undefined || code === undefined || code === '') return unexpectedAnswer(answer, call, now);
  return agentgateError({
    ...around,
    code,
    detail: str(problem.detail) ?? str(problem.title) ?? code,
    type: str(problem.type),
    title: str(problem.title),
    retryable: typeof problem.retryable === 'boolean' ? problem.retryable : undefined,
    hint: str(problem.hint),
    workspaceId: str(problem.workspaceId) ?? call.workspaceId,
    agentId: str(problem.agentId),
    agentStatus: str(problem.agentStatus),
    disconnectedSeconds: num(problem.disconnectedSeconds),
  });
}

/** An answer the client cannot read as the gate's: `UNEXPECTED_RESPONSE` (retryable when its status is transient). */
export function unexpectedAnswer(answer: Omit<Answer, 'text'>, call: CallContext, now: number, why?: string, hint?: string): AgentgateError {
  const type = answer.headers.get('content-type') ?? 'no content type';
  return new AgentgateError({
    code: 'UNEXPECTED_RESPONSE',
    status: answer.status,
    detail: why ?? `HTTP ${answer.status} (${type}) is not an answer of agentgate: no problem+json with a code`,
    hint,
    retryAfter: parseRetryAfter(answer.headers.get('retry-after'), now),
    requestId: answer.headers.get('x-request-id') ?? undefined,
    workspaceId: call.workspaceId,
    method: call.method,
    proxied: call.proxied,
  });
}

/** The hint of a refused HEAD, whose answer has no body to say why. */
export const HEAD_REFUSED_HINT = 'agentgate refused the request without giving its reason; check the workspace’s state before trying again.';

/**
 * The gate's refusal of a proxied HEAD: a problem+json by its headers, but a HEAD answer has no
 * body, so the code is unknown. It is `UNEXPECTED_RESPONSE` with the refusal's status, retryable
 * when that status is transient (429, 502, 503, 504), and its Retry-After.
 */
export function headRefusal(answer: Omit<Answer, 'text'>, call: CallContext, now: number): AgentgateError {
  return unexpectedAnswer(
    answer,
    call,
    now,
    `agentgate refused the HEAD request with HTTP ${answer.status}; an answer to HEAD has no body, so its code is unknown ` +
      '(the same call as GET, or agent(), tells why)',
    HEAD_REFUSED_HINT,
  );
}
