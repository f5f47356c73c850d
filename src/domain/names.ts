// How ids and names are spelled, for the request schemas and for the proxy, which parses its
// raw URL itself (a WebSocket upgrade, a path the router does not split).

/** A UUID, hyphenated; PostgreSQL's uuid type refuses the `urn:uuid:` prefix ajv's format allows. */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

const UUID = new RegExp(UUID_PATTERN);

/**
 * Pure: a UUID as agentgate keeps it, lower case, or undefined when `value` is not one. Ids are
 * made canonical where they enter (path, body, notification): compared as strings everywhere
 * after, an id typed in upper case would otherwise miss the caches, the work in flight and the
 * events that name it in lower case.
 */
export function canonicalId(value: unknown): string | undefined {
  return typeof value === 'string' && UUID.test(value) ? value.toLowerCase() : undefined;
}

/** An agent's name within its build. */
export const AGENT_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]*$';
export const AGENT_NAME_MAX_LENGTH = 64;
