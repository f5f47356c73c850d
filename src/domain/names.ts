// How ids and names are spelled, for the request schemas and for the proxy, which parses its
// raw URL itself (a WebSocket upgrade, a path the router does not split).

/** A UUID, hyphenated; PostgreSQL's uuid type refuses the `urn:uuid:` prefix ajv's format allows. */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

/** An agent's name within its build. */
export const AGENT_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]*$';
export const AGENT_NAME_MAX_LENGTH = 64;
