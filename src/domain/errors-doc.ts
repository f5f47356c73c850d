// docs/errors.md, rendered from the catalogue, its guide and the client's own codes
// (`npm run docs:errors` writes it; test/unit/errors-doc.test.ts checks it is current).
import { CLIENT_ERROR_CODES, TRANSIENT_STATUSES, type ClientCodeEntry, type ClientErrorCode } from './client-codes.js';
import { errorClassName } from './error-names.js';
import { ERROR_CATALOGUE, ERROR_GUIDE, type ErrorCode } from './errors.js';

const yesNo = (value: boolean) => (value ? 'yes' : 'no');
const anchor = (code: string) => code.toLowerCase();

export function renderErrorsDoc(): string {
  const codes = Object.keys(ERROR_CATALOGUE) as ErrorCode[];
  const lines: string[] = [
    '# Error codes',
    '',
    '<!-- Generated from src/domain/errors.ts and src/domain/client-codes.ts',
    '     by `npm run docs:errors`; edit those files, not this one. -->',
    '',
    'Every error agentgate answers is RFC 9457 `application/problem+json`:',
    '',
    '```json',
    '{"type": "urn:agentgate:error:agent-disconnected", "title": "Agent disconnected", "status": 409,',
    ' "detail": "the agent said goodbye", "code": "AGENT_DISCONNECTED", "retryable": false,',
    ' "hint": "…", "workspaceId": "…", "agentId": "…", "agentStatus": "disconnected", "disconnectedSeconds": 42}',
    '```',
    '',
    '- `code` is stable and is what callers branch on; codes are never reused.',
    '- `retryable` says the condition is transient: the same call may succeed later. A proxied request that may have reached',
    '  the agent (`AGENT_CONNECTION_LOST`, `AGENT_RESPONSE_TIMEOUT`) is retried only when its method is idempotent. The other',
    '  retryable codes of a proxied request, `INTERNAL` aside, are refusals before anything was sent: safe to retry whatever',
    '  the method.',
    '- `hint` is one sentence for an LLM to relay to the user: what happened and what to do. Every code of the gate’s',
    '  decision (`WORKSPACE_*`, `AGENT_*`, `DATABASE_UNAVAILABLE`) has one; relay it as the tool call’s result.',
    '- `Retry-After` (a header, in seconds) says when to come back, where the gate knows.',
    '- On a proxied call (`/workspaces/:id/conn/<path>`), the agent’s own answers, error statuses included, pass through',
    '  unchanged with `x-agentgate-upstream: agent`; only answers without that header are the gate’s.',
    '',
    'The TypeScript client, `agentgate/client`, throws one class per code (the last column), all extending `AgentgateError`;',
    'see the README’s “Client (TypeScript)”.',
    '',
    '| code | status | retryable | class in `agentgate/client` |',
    '|---|---|---|---|',
    ...codes.map((code) => {
      const entry = ERROR_CATALOGUE[code];
      return `| [\`${code}\`](#${anchor(code)}) | ${entry.status} | ${yesNo(entry.retryable)} | \`${errorClassName(code)}\` |`;
    }),
    '',
  ];
  for (const code of codes) {
    const entry: { status: number; retryable: boolean; title: string; hint?: string } = ERROR_CATALOGUE[code];
    const guide = ERROR_GUIDE[code];
    lines.push(
      `## ${code}`,
      '',
      `${entry.status}, ${entry.retryable ? 'retryable' : 'not retryable'}: ${entry.title}.`,
      '',
      `**When.** ${guide.meaning}`,
      '',
      `**Hint for the model.** ${entry.hint === undefined ? 'None: nothing about the workspace to tell the user; `detail` says what happened.' : `“${entry.hint}”`}`,
      '',
      `**What a chat server should do.** ${guide.chatServer}`,
      '',
    );
  }
  const statuses = [...TRANSIENT_STATUSES];
  const transient = `${statuses.slice(0, -1).join(', ')} or ${statuses.at(-1)}`;
  lines.push(
    '## Codes of the TypeScript client',
    '',
    '`agentgate/client` gives these for answers that are not agentgate’s problem+json. They are not in the catalogue and',
    'never come from agentgate itself; they are plain `AgentgateError`s, with a hint like the others.',
    '',
  );
  for (const code of Object.keys(CLIENT_ERROR_CODES) as ClientErrorCode[]) {
    const entry: ClientCodeEntry = CLIENT_ERROR_CODES[code];
    const retryable = entry.retryable === undefined ? `retryable when the status is ${transient}` : entry.retryable ? 'retryable' : 'not retryable';
    const status = entry.status === 0 ? '0 (no HTTP answer)' : 'the answer’s';
    lines.push(
      `### ${code}`,
      '',
      `Status: ${status}; ${retryable}.`,
      '',
      `**When.** ${entry.meaning}`,
      '',
      `**Hint for the model.** “${entry.hint}”`,
      '',
      `**What a chat server should do.** ${entry.chatServer}`,
      '',
    );
  }
  return lines.join('\n');
}
