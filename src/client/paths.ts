// What the client puts in a URL from its caller (pure): the workspace id and the tool path. fetch
// and WebSocket resolve `..`, `%2e%2e` and `\` before the gate sees them, so a path the gate would
// refuse must never be sent: `../../<id>` would reach `/workspaces/<id>` with the caller's token.
import { checkForwardPath, type PathCheck } from '../domain/forward-path.js';

/** The tool path as it follows `/workspaces/:id/conn/` (no leading slash, query kept), or why it is refused. */
export type ToolPath = { ok: true; rest: string } | { ok: false; reason: string };

/**
 * A tool path relative to the agent's base path (`/exec`, `files?path=a/../b`): the path part
 * must pass the gate's own rule (contract §6), the query is free. One leading slash is dropped; a
 * second one would make an empty segment, so `//host/x` and `http://host/x` are refused.
 */
export function toolPath(path: unknown): ToolPath {
  if (typeof path !== 'string') return { ok: false, reason: 'the path is not a string' };
  // A fragment is never sent; what follows it would be dropped without a word.
  if (path.includes('#')) return { ok: false, reason: 'the path contains a fragment (#)' };
  const q = path.indexOf('?');
  const bare = q === -1 ? path : path.slice(0, q);
  const query = q === -1 ? '' : path.slice(q);
  const relative = bare.startsWith('/') ? bare : `/${bare}`;
  const check: PathCheck = checkForwardPath(relative);
  if (!check.ok) return check;
  return { ok: true, rest: relative.slice(1) + query };
}

/** Why a workspace id cannot be one path segment once encoded; undefined when it can. */
export function workspaceIdProblem(workspaceId: unknown): string | undefined {
  if (typeof workspaceId !== 'string' || workspaceId === '') return 'the workspace id is empty or not a string';
  // encodeURIComponent leaves dots alone, and a URL parser resolves these two.
  if (workspaceId === '.' || workspaceId === '..') return 'the workspace id is a dot segment';
  return undefined;
}
