// TypeBox schemas shared by routes: they validate requests, shape responses and feed OpenAPI.
import { Type, type TSchema } from '@sinclair/typebox';
import { AGENT_NAME_MAX_LENGTH, AGENT_NAME_PATTERN, UUID_PATTERN } from '../domain/names.js';

// The pattern as well as the format: ajv's `uuid` format also admits a `urn:uuid:` prefix,
// which PostgreSQL's uuid type refuses (a 500 where a 400 is due).
export const Uuid = Type.String({
  format: 'uuid',
  pattern: UUID_PATTERN,
  description: 'a UUID',
});
/** Free text stored in a PostgreSQL `text` column, which cannot hold NUL (a 500 otherwise). */
export function StoredText(maxLength: number) {
  return Type.String({ minLength: 1, maxLength, pattern: '^[^\\u0000]*$', description: `1 to ${maxLength} characters, no NUL` });
}

export const Time = Type.String({ format: 'date-time' });
export const NullableTime = Type.Union([Time, Type.Null()]);

export const WorkspaceParams = Type.Object({ workspaceId: Uuid }, { additionalProperties: false });
export const TokenParams = Type.Object({ tokenId: Uuid }, { additionalProperties: false });

export const AgentName = Type.String({
  minLength: 1,
  maxLength: AGENT_NAME_MAX_LENGTH,
  pattern: AGENT_NAME_PATTERN,
  description: 'letters, digits, dot, underscore and dash; starts with a letter or digit',
});

export const AgentStatus = Type.Union([
  Type.Literal('connecting'),
  Type.Literal('connected'),
  Type.Literal('disconnected'),
  Type.Literal('timeout'),
]);

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    retryable: Type.Boolean(),
    hint: Type.Optional(Type.String()),
    workspaceId: Type.Optional(Type.String()),
    agentId: Type.Optional(Type.String()),
    agentStatus: Type.Optional(Type.String()),
    disconnectedSeconds: Type.Optional(Type.Integer()),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details' },
);

/** Error responses every authenticated route may give, for the OpenAPI document. */
export function withProblems<T extends Record<number, TSchema>>(ok: T) {
  const ref = Type.Ref(Problem);
  return { ...ok, '4xx': ref, '5xx': ref };
}

export const NoContent = Type.Null({ description: 'No content' });
