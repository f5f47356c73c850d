// What the model reads when the gate refuses a tool call or the agent cannot answer it (SPEC 11):
// a normal tool result with isError, the SPEC 6 hint and then the detail as its text, and the
// code, retryability and the agent's state under _meta["agentgate/error"]. Pure.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
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
