// The proxied request's target (contract §4.1, 6): its raw URL parsed into workspace, agent, path and
// query (proxyTarget). The rules its path must pass are src/domain/forward-path.ts, which the
// client applies too.
import { ApiError } from '../domain/errors.js';
import { checkForwardPath } from '../domain/forward-path.js';
import { AGENT_NAME_MAX_LENGTH, AGENT_NAME_PATTERN, UUID_PATTERN } from '../domain/names.js';

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
