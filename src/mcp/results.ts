// What the model reads when the gate refuses a tool call or the agent cannot answer it (contract §11):
// a normal tool result with isError, the contract §6 hint and then the detail as its text, and the
// code, retryability and the agent's state under _meta["agentgate/error"]; and which code an
// agent's answer that is not MCP comes to. Pure.
import { CallToolResultSchema, ListToolsResultSchema, type CallToolResult, type ListToolsResult } from '@modelcontextprotocol/sdk/types.js';
import { ERROR_CATALOGUE, type ApiError, type ErrorCode } from '../domain/errors.js';

export const ERROR_META_KEY = 'agentgate/error';
export const STALE_META_KEY = 'agentgate/stale';

export interface ErrorMeta {
  code: ErrorCode;
  retryable: boolean;
  /** The agent's classified status when the gate read it, null when it did not get that far. */
  agentStatus: string | null;
  disconnectedSeconds: number | null;
  retryAfter?: number;
}

export function errorMeta(error: ApiError): ErrorMeta {
  const { extras } = error;
  return {
    code: error.code,
    retryable: ERROR_CATALOGUE[error.code].retryable,
    agentStatus: extras.agentStatus ?? null,
    disconnectedSeconds: extras.disconnectedSeconds ?? null,
    ...(extras.retryAfter === undefined ? {} : { retryAfter: extras.retryAfter }),
  };
}

/** The hint, then the detail with its code: what happened, what to do, and the specifics. */
export function errorText(error: ApiError): string {
  const entry: { title: string; hint?: string } = ERROR_CATALOGUE[error.code];
  return `${entry.hint ?? `${entry.title}.`}\n${error.code}: ${error.detail}`;
}

export function errorResult(error: ApiError): CallToolResult {
  return {
    content: [{ type: 'text', text: errorText(error) }],
    isError: true,
    _meta: { [ERROR_META_KEY]: errorMeta(error) },
  };
}

/**
 * The code of an agent that answered agentgate's MCP request, but not as an MCP server does: the
 * agent is there, so it is never AGENT_UNREACHABLE unless its own server failed (5xx, which may
 * pass). Too large a request is PAYLOAD_TOO_LARGE; no MCP endpoint at /mcp is NOT_FOUND; the
 * agent's rate limit is RATE_LIMITED; any other refusal (a signature it does not accept, a
 * protocol it does not speak) or an answer that is not MCP at all is INVALID_REQUEST. None of
 * these passes by repeating the call, and the detail says so.
 */
export function agentAnswerCode(status: number): ErrorCode {
  if (status === 413) return 'PAYLOAD_TOO_LARGE';
  if (status === 429) return 'RATE_LIMITED';
  if (status === 404 || status === 405) return 'NOT_FOUND';
  if (status >= 500 && status <= 599) return 'AGENT_UNREACHABLE';
  return 'INVALID_REQUEST';
}

/** The detail for `agentAnswerCode`: what the agent said, and whether repeating can help. */
export function agentAnswerDetail(code: ErrorCode, said: string): string {
  return ERROR_CATALOGUE[code].retryable ? said : `${said}; repeating the same call will not help`;
}

type Validated = { ok: true; result: CallToolResult | ListToolsResult } | { ok: false; problem: string };

/** The agent's result checked against MCP's schema for the method (the SDK's, as its client checks). */
export function validResult(method: 'tools/list' | 'tools/call', result: unknown): Validated {
  const parsed = method === 'tools/list' ? ListToolsResultSchema.safeParse(result) : CallToolResultSchema.safeParse(result);
  if (parsed.success) return { ok: true, result: parsed.data };
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'result';
  return { ok: false, problem: `${where}: ${issue?.message ?? 'invalid'}`.slice(0, 200) };
}
