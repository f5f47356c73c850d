// The proxied request's target (SPEC 4.1, 6): its raw URL parsed into workspace, agent, path and
// query (proxyTarget), and the rules its path must pass. The path is forwarded as sent and never
// resolved; anything that a server on the way could resolve out of the agent's base path is
// refused: dot segments (plain or percent-encoded, at any depth of encoding, with or without
// `;` parameters), encoded slashes and backslashes, raw backslashes, empty segments, NUL and
// control characters. Decoding is bounded (MAX_DECODE_ROUNDS), so a check is linear in the
// path's length.

import { ApiError } from '../domain/errors.js';
import { AGENT_NAME_MAX_LENGTH, AGENT_NAME_PATTERN, UUID_PATTERN } from '../domain/names.js';

export type PathCheck = { ok: true } | { ok: false; reason: string };

/**
 * How many rounds of percent-decoding may change a segment. Each round is linear in the
 * segment's length, so bounding the rounds keeps a whole check linear: decoding to a fixed
 * point without a bound is quadratic (a segment of nested `%25` escapes loses two characters a
 * round). Quadruple encoding is still refused on its content; deeper is refused outright.
 */
export const MAX_DECODE_ROUNDS = 4;

type Decoded = { ok: true; value: string } | { ok: false; reason: string };

/** Percent-decodes repeatedly (double, triple... encodings) until nothing changes, at most MAX_DECODE_ROUNDS times. */
function decodeDeep(segment: string): Decoded {
  let current = segment;
  // One round more than allowed: it must change nothing.
  for (let round = 0; round <= MAX_DECODE_ROUNDS; round++) {
    if (!current.includes('%')) return { ok: true, value: current };
    let next: string;
    try {
      next = decodeURIComponent(current);
    } catch {
      return { ok: false, reason: 'the path contains malformed percent-encoding' };
    }
    if (next === current) return { ok: true, value: current };
    current = next;
  }
  return { ok: false, reason: `the path is percent-encoded more than ${MAX_DECODE_ROUNDS} levels deep` };
}

/** Checks the raw path (no query) that follows `/workspaces/:id/conn`; it starts with `/`. */
export function checkForwardPath(rawPath: string): PathCheck {
  if (!rawPath.startsWith('/')) return { ok: false, reason: 'the path must start with /' };
  if (rawPath.length > 8192) return { ok: false, reason: 'the path is too long' };
  if (rawPath.includes('\\')) return { ok: false, reason: 'the path contains a backslash' };
  const segments = rawPath.slice(1).split('/');
  for (const [i, segment] of segments.entries()) {
    // A trailing slash is an empty last segment and fine; `//` elsewhere is not.
    if (segment === '' && i !== segments.length - 1) return { ok: false, reason: 'the path contains an empty segment (//)' };
    const result = decodeDeep(segment);
    if (!result.ok) return result;
    const decoded = result.value;
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    if (/[\u0000-\u001f\u007f]/.test(decoded)) return { ok: false, reason: 'the path contains a control character' };
    if (decoded.includes('/') || decoded.includes('\\')) {
      return { ok: false, reason: 'the path contains an encoded slash or backslash' };
    }
    // `..;x` and `.;x` are dot segments to servers that strip path parameters.
    const bare = decoded.split(';')[0] ?? '';
    if (bare === '.' || bare === '..') return { ok: false, reason: 'the path contains a dot segment' };
  }
  return { ok: true };
}

export interface SplitQuery {
  /** The query string to forward, without `agent` parameters, with its leading `?` (or ''). */
  forwarded: string;
  /** Values of the `agent` parameters. */
  agents: string[];
}

/** Removes `agent=` parameters from a raw query string, leaving the rest byte for byte. */
export function splitAgentParam(rawQuery: string): SplitQuery | undefined {
  if (rawQuery === '') return { forwarded: '', agents: [] };
  const kept: string[] = [];
  const agents: string[] = [];
  for (const part of rawQuery.split('&')) {
    const eq = part.indexOf('=');
    const rawKey = eq === -1 ? part : part.slice(0, eq);
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(rawKey.replaceAll('+', ' '));
      value = eq === -1 ? '' : decodeURIComponent(part.slice(eq + 1).replaceAll('+', ' '));
    } catch {
      if (rawKey === 'agent') return undefined;
      kept.push(part);
      continue;
    }
    if (key === 'agent') agents.push(value);
    else kept.push(part);
  }
  return { forwarded: kept.length > 0 ? `?${kept.join('&')}` : '', agents };
}

const AGENT_NAME = new RegExp(AGENT_NAME_PATTERN);
const UUID = new RegExp(UUID_PATTERN);

export interface ProxyTarget {
  workspaceId: string;
  /** Path after `/workspaces/:id/conn`, starting with `/`. */
  path: string;
  /** Query to forward, `agent` removed, with its `?` or ''. */
  query: string;
  agentName: string | undefined;
}

/** Parses and checks the raw URL of a proxied request; throws INVALID_REQUEST. */
export function proxyTarget(rawUrl: string, headerAgent: string | string[] | undefined): ProxyTarget {
  // A fragment is never part of a request target (RFC 9112 3.2); forwarded, it would be signed
  // and read differently by each server on the way.
  if (rawUrl.includes('#')) throw new ApiError('INVALID_REQUEST', 'the request target contains a fragment (#)');
  const q = rawUrl.indexOf('?');
  const rawPath = q === -1 ? rawUrl : rawUrl.slice(0, q);
  const rawQuery = q === -1 ? '' : rawUrl.slice(q + 1);
  const segments = rawPath.split('/');
  // ['', 'workspaces', '<id>', 'conn', ...rest]
  const workspaceId = segments[2] ?? '';
  // The route's schema checks it too; this parse reads the raw URL and stands on its own.
  if (!UUID.test(workspaceId)) throw new ApiError('INVALID_REQUEST', 'the workspace id is not a UUID');
  const path = `/${segments.slice(4).join('/')}`;
  const check = checkForwardPath(path);
  if (!check.ok) throw new ApiError('INVALID_REQUEST', check.reason);
  const split = splitAgentParam(rawQuery);
  if (!split) throw new ApiError('INVALID_REQUEST', 'the query string is malformed');
  const names = new Set(split.agents);
  if (Array.isArray(headerAgent)) throw new ApiError('INVALID_REQUEST', 'x-agentgate-agent is given more than once');
  if (headerAgent !== undefined) names.add(headerAgent);
  if (names.size > 1) throw new ApiError('INVALID_REQUEST', 'the agent parameter and the x-agentgate-agent header name different agents');
  const [agentName] = names;
  if (agentName !== undefined && (agentName.length > AGENT_NAME_MAX_LENGTH || !AGENT_NAME.test(agentName))) throw new ApiError('INVALID_REQUEST', 'the agent name is malformed');
  return { workspaceId, path, query: split.forwarded, agentName };
}
