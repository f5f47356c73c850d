// Environment → typed, frozen Config, parsed once at start (contract §7).
// A bad value stops the process with one line naming the variable and what it allows.
import { isIP } from 'node:net';
import envSchema from 'env-schema';
import { Type, type Static, type TSchema } from '@sinclair/typebox';

const ms = (def: number, min: number, max: number, description: string) =>
  Type.Integer({ default: def, minimum: min, maximum: max, description });

const HOUR = 3_600_000;

export const ConfigSchema = Type.Object({
  DATABASE_URL: Type.Optional(
    Type.String({ minLength: 1, description: 'a postgres:// or postgresql:// URL' }),
  ),
  AGENTGATE_DATA_DIR: Type.String({ default: '.agentgate', minLength: 1, description: 'a directory path' }),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1, description: 'a host name or IP address' }),
  PORT: Type.Integer({ default: 8080, minimum: 0, maximum: 65535, description: 'a TCP port' }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info', description: 'a pino level' },
  ),
  AGENTGATE_ADMIN_TOKEN: Type.Optional(
    Type.String({ minLength: 16, description: 'a token of at least 16 characters' }),
  ),
  AGENTGATE_DIAL_TIMEOUT_MS: ms(30_000, 1, HOUR, 'milliseconds'),
  AGENTGATE_DISCONNECT_GRACE_MS: ms(90_000, 0, 24 * HOUR, 'milliseconds'),
  AGENTGATE_DIAL_BACKOFF_MS: ms(5_000, 0, HOUR, 'milliseconds'),
  AGENTGATE_INACTIVE_TIMEOUT_MS: ms(30_000, 1, 24 * HOUR, 'milliseconds'),
  AGENTGATE_DB_TIMEOUT_MS: ms(2_000, 1, 10 * 60_000, 'milliseconds'),
  AGENTGATE_CONN_IDLE_MS: ms(300_000, 1, 24 * HOUR, 'milliseconds'),
  AGENTGATE_MAX_CONNS: Type.Integer({ default: 10_000, minimum: 1, maximum: 1_000_000, description: 'a count' }),
  AGENTGATE_BODY_LIMIT_BYTES: Type.Integer({
    default: 10_485_760,
    minimum: 1024,
    maximum: 1024 * 1024 * 1024,
    description: 'bytes',
  }),
  AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: ms(300_000, 1, 24 * HOUR, 'milliseconds'),
  AGENTGATE_REQUEST_TIMEOUT_MS: ms(30_000, 1, HOUR, 'milliseconds'),
  AGENTGATE_MCP_CALL_TIMEOUT_MS: ms(900_000, 1, 24 * HOUR, 'milliseconds'),
  AGENTGATE_SHUTDOWN_GRACE_MS: ms(10_000, 0, 10 * 60_000, 'milliseconds'),
  AGENTGATE_WS_IDLE_TIMEOUT_MS: ms(300_000, 1, 24 * HOUR, 'milliseconds'),
  AGENTGATE_WS_MAX_LIFETIME_MS: ms(0, 0, 7 * 24 * HOUR, 'milliseconds (0 = no limit)'),
  AGENTGATE_RATE_LIMIT_PER_MIN: Type.Integer({ default: 0, minimum: 0, maximum: 10_000_000, description: 'requests per minute (0 = off)' }),
  AGENTGATE_TRUST_PROXY: Type.Optional(
    Type.String({ minLength: 1, description: 'a comma-separated list of IP addresses or CIDR ranges' }),
  ),
  AGENTGATE_MAX_REQUESTS_PER_TOKEN: Type.Integer({ default: 256, minimum: 1, maximum: 1_000_000, description: 'a count' }),
  AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN: Type.Integer({ default: 64, minimum: 1, maximum: 1_000_000, description: 'a count' }),
  // OpenTelemetry's own names: tracing is on when either endpoint is set.
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(Type.String({ minLength: 1, description: 'an http:// or https:// URL' })),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(Type.String({ minLength: 1, description: 'an http:// or https:// URL' })),
  OTEL_SERVICE_NAME: Type.Optional(Type.String({ minLength: 1, description: 'a service name' })),
});

type RawConfig = Static<typeof ConfigSchema>;

export interface TracingConfig {
  /** Where spans are sent (OTLP over HTTP); undefined: tracing is off. */
  readonly endpoint: string | undefined;
  /** OTEL_SERVICE_NAME; undefined: `agentgate` (or a service.name in OTEL_RESOURCE_ATTRIBUTES). */
  readonly serviceName: string | undefined;
}

export interface Config {
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly host: string;
  readonly port: number;
  readonly logLevel: RawConfig['LOG_LEVEL'];
  readonly adminToken: string | undefined;
  readonly dialTimeoutMs: number;
  readonly disconnectGraceMs: number;
  readonly dialBackoffMs: number;
  readonly inactiveTimeoutMs: number;
  readonly dbTimeoutMs: number;
  readonly connIdleMs: number;
  readonly maxConns: number;
  readonly bodyLimitBytes: number;
  readonly proxyHeadersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /**
   * Bound on one MCP tools/call, from the gate's decision to the agent's answer, whatever the
   * agent sends meanwhile (progress and keep-alives reset only the silence bound).
   */
  readonly mcpCallTimeoutMs: number;
  readonly shutdownGraceMs: number;
  /** A proxied WebSocket with no data either way for this long is closed. */
  readonly wsIdleTimeoutMs: number;
  /** A proxied WebSocket older than this is closed (0: no limit). */
  readonly wsMaxLifetimeMs: number;
  readonly rateLimitPerMin: number;
  /** Addresses and CIDR ranges of the reverse proxies in front of the gate; empty: none is trusted. */
  readonly trustProxy: readonly string[];
  readonly maxRequestsPerToken: number;
  readonly maxWebSocketsPerToken: number;
  readonly tracing: TracingConfig;
}

/** A configuration error: its message is the one line printed before exiting. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
}

function describe(schema: TSchema): string {
  if (schema.anyOf) {
    return `one of ${(schema.anyOf as TSchema[]).map((s) => String(s.const)).join(', ')}`;
  }
  const what = String(schema.description ?? schema.type);
  if (schema.type === 'integer') {
    return `an integer from ${String(schema.minimum)} to ${String(schema.maximum)} (${what})`;
  }
  return what;
}

// Values of these are never echoed back: they may hold a password or a token.
const SECRET = new Set(['DATABASE_URL', 'AGENTGATE_ADMIN_TOKEN']);

function explain(env: Record<string, string | undefined>, err: AjvError): string {
  const name = err.instancePath.replace(/^\//, '');
  const schema = (ConfigSchema.properties as Record<string, TSchema>)[name];
  if (!name || !schema) return `invalid configuration: ${err.keyword}`;
  const shown = SECRET.has(name) ? '' : `=${JSON.stringify(env[name] ?? '')}`;
  return `invalid ${name}${shown}: must be ${describe(schema)}`;
}

/** Parses the environment; throws ConfigError with one line naming the bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Unset and empty mean the same for optional variables: `FOO=` in a compose file is common.
  const data: Record<string, string> = {};
  for (const key of Object.keys(ConfigSchema.properties)) {
    const value = env[key];
    if (value !== undefined && value !== '') data[key] = value;
  }
  // Integers are plain decimal digits. Ajv's coercion alone would also take "Infinity", "1e3",
  // "0x10" and " 42 ", and an infinite value passes its range checks.
  for (const [key, schema] of Object.entries(ConfigSchema.properties as Record<string, TSchema>)) {
    const value = data[key];
    if (schema.type === 'integer' && value !== undefined && !/^[+-]?\d+$/.test(value)) {
      throw new ConfigError(explain(env, { instancePath: `/${key}`, keyword: 'type', params: {} }));
    }
  }
  let raw: RawConfig;
  try {
    raw = envSchema<RawConfig>({ schema: structuredClone(ConfigSchema), data, env: false });
  } catch (error) {
    const errors = (error as { errors?: AjvError[] }).errors;
    const first = errors?.[0];
    throw new ConfigError(first ? explain(env, first) : String(error));
  }
  if (raw.DATABASE_URL !== undefined) checkDatabaseUrl(raw.DATABASE_URL);
  const trustProxy = raw.AGENTGATE_TRUST_PROXY === undefined ? [] : parseTrustProxy(raw.AGENTGATE_TRUST_PROXY);
  return Object.freeze({
    databaseUrl: raw.DATABASE_URL,
    dataDir: raw.AGENTGATE_DATA_DIR,
    host: raw.HOST,
    port: raw.PORT,
    logLevel: raw.LOG_LEVEL,
    adminToken: raw.AGENTGATE_ADMIN_TOKEN,
    dialTimeoutMs: raw.AGENTGATE_DIAL_TIMEOUT_MS,
    disconnectGraceMs: raw.AGENTGATE_DISCONNECT_GRACE_MS,
    dialBackoffMs: raw.AGENTGATE_DIAL_BACKOFF_MS,
    inactiveTimeoutMs: raw.AGENTGATE_INACTIVE_TIMEOUT_MS,
    dbTimeoutMs: raw.AGENTGATE_DB_TIMEOUT_MS,
    connIdleMs: raw.AGENTGATE_CONN_IDLE_MS,
    maxConns: raw.AGENTGATE_MAX_CONNS,
    bodyLimitBytes: raw.AGENTGATE_BODY_LIMIT_BYTES,
    proxyHeadersTimeoutMs: raw.AGENTGATE_PROXY_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: raw.AGENTGATE_REQUEST_TIMEOUT_MS,
    mcpCallTimeoutMs: raw.AGENTGATE_MCP_CALL_TIMEOUT_MS,
    shutdownGraceMs: raw.AGENTGATE_SHUTDOWN_GRACE_MS,
    wsIdleTimeoutMs: raw.AGENTGATE_WS_IDLE_TIMEOUT_MS,
    wsMaxLifetimeMs: raw.AGENTGATE_WS_MAX_LIFETIME_MS,
    rateLimitPerMin: raw.AGENTGATE_RATE_LIMIT_PER_MIN,
    trustProxy: Object.freeze(trustProxy),
    maxRequestsPerToken: raw.AGENTGATE_MAX_REQUESTS_PER_TOKEN,
    maxWebSocketsPerToken: raw.AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN,
    tracing: Object.freeze({ endpoint: tracesEndpoint(raw), serviceName: raw.OTEL_SERVICE_NAME }),
  });
}

/**
 * The URL spans are posted to, as the OpenTelemetry SDK derives it: the traces endpoint as
 * given, or else `v1/traces` under the general one.
 */
function tracesEndpoint(raw: RawConfig): string | undefined {
  const specific = raw.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const general = raw.OTEL_EXPORTER_OTLP_ENDPOINT;
  for (const [name, value] of [['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', specific], ['OTEL_EXPORTER_OTLP_ENDPOINT', general]] as const) {
    if (value === undefined) continue;
    let url: URL | undefined;
    try {
      url = new URL(value);
    } catch {
      url = undefined;
    }
    // The value may carry credentials in its userinfo: name the variable, never echo it.
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new ConfigError(`invalid ${name}: must be an http:// or https:// URL`);
  }
  if (specific !== undefined) return new URL(specific).toString();
  if (general !== undefined) return `${general.endsWith('/') ? general : `${general}/`}v1/traces`;
  return undefined;
}

/** `10.0.0.1, 192.168.0.0/16, ::1` → its entries, each an IP address or a CIDR range. */
function parseTrustProxy(value: string): string[] {
  const entries = value.split(',').map((e) => e.trim());
  for (const entry of entries) {
    const [address = '', prefix, ...rest] = entry.split('/');
    const family = isIP(address);
    const bits = family === 6 ? 128 : 32;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits);
    if (family === 0 || !prefixOk || rest.length > 0) {
      throw new ConfigError(
        `invalid AGENTGATE_TRUST_PROXY=${JSON.stringify(value)}: must be ${ConfigSchema.properties.AGENTGATE_TRUST_PROXY.description ?? ''}`,
      );
    }
  }
  return entries;
}

function checkDatabaseUrl(value: string): void {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:')) {
    // The value may hold a password: name the variable, never echo it.
    throw new ConfigError('invalid DATABASE_URL: must be a postgres:// or postgresql:// URL');
  }
}
