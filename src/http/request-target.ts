// The request target, made canonical once, before routing: what the router, authorization, the
// proxy, logs and traces read, and what the agent receives, all come from this one string.
// - An absolute-form target (`GET http://host/workspaces/...`, RFC 9112 3.2.2) becomes its
//   origin form: the router would take the path after the authority while a parse of the raw
//   string saw another, so a request could be logged and traced as one workspace while it went
//   to another.
// - The id in `/workspaces/<id>` and `/tokens/<id>` is lower-cased: ids are compared as strings
//   everywhere after (caches, work in flight, events), and PostgreSQL gives them in lower case.
// Pure, and cheap for the usual target: no allocation unless something changes.
import { canonicalId } from '../domain/names.js';

const ID_PREFIXES = ['/workspaces/', '/tokens/'];
const UUID_LENGTH = 36;
const SLASH = 47;
const QUESTION = 63;

export function canonicalTarget(url: string): string {
  const target = url.charCodeAt(0) === SLASH ? url : originForm(url);
  for (const prefix of ID_PREFIXES) {
    if (!target.startsWith(prefix)) continue;
    const start = prefix.length;
    const end = start + UUID_LENGTH;
    const after = target.charCodeAt(end);
    if (target.length < end || !(Number.isNaN(after) || after === SLASH || after === QUESTION)) return target;
    if (!hasUpperCase(target, start, end)) return target;
    const canonical = canonicalId(target.slice(start, end));
    return canonical === undefined ? target : `${target.slice(0, start)}${canonical}${target.slice(end)}`;
  }
  return target;
}

function hasUpperCase(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c >= 65 && c <= 90) return true;
  }
  return false;
}

/** `http(s)://authority/path?query` as `/path?query`; any other target (`*`, garbage) as it is. */
function originForm(url: string): string {
  const scheme = /^https?:\/\//i.exec(url);
  if (!scheme) return url;
  const rest = url.slice(scheme[0].length);
  const path = rest.search(/[/?]/);
  if (path === -1) return '/';
  return rest.charCodeAt(path) === SLASH ? rest.slice(path) : `/${rest.slice(path)}`;
}
