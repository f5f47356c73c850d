// Configuration from the environment (contract §7): defaults, overrides, and one clear line
// naming the variable for every bad value, without echoing secrets.
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../../src/config.js';

const root = path.resolve(import.meta.dirname, '../..');

const DEFAULTS: Config = {
  databaseUrl: undefined,
  dataDir: '.agentgate',
  host: '127.0.0.1',
  port: 8080,
  logLevel: 'info',
  adminToken: undefined,
  dialTimeoutMs: 30_000,
  disconnectGraceMs: 90_000,
  dialBackoffMs: 5_000,
  inactiveTimeoutMs: 30_000,
  dbTimeoutMs: 2_000,
  connIdleMs: 300_000,
  maxConns: 10_000,
  bodyLimitBytes: 10_485_760,
  proxyHeadersTimeoutMs: 300_000,
  requestTimeoutMs: 30_000,
  mcpCallTimeoutMs: 900_000,
  shutdownGraceMs: 10_000,
  wsIdleTimeoutMs: 300_000,
  wsMaxLifetimeMs: 0,
  rateLimitPerMin: 0,
  trustProxy: [],
  maxRequestsPerToken: 256,
  maxWebSocketsPerToken: 64,
  tracing: { endpoint: undefined, serviceName: undefined },
};

const VARIABLES = [
  'DATABASE_URL',
  'AGENTGATE_DATA_DIR',
  'HOST',
  'PORT',
  'LOG_LEVEL',
  'AGENTGATE_ADMIN_TOKEN',
  'AGENTGATE_DIAL_TIMEOUT_MS',
  'AGENTGATE_DISCONNECT_GRACE_MS',
  'AGENTGATE_DIAL_BACKOFF_MS',
  'AGENTGATE_INACTIVE_TIMEOUT_MS',
  'AGENTGATE_DB_TIMEOUT_MS',
  'AGENTGATE_CONN_IDLE_MS',
  'AGENTGATE_MAX_CONNS',
  'AGENTGATE_BODY_LIMIT_BYTES',
  'AGENTGATE_PROXY_HEADERS_TIMEOUT_MS',
  'AGENTGATE_REQUEST_TIMEOUT_MS',
  'AGENTGATE_SHUTDOWN_GRACE_MS',
  'AGENTGATE_WS_IDLE_TIMEOUT_MS',
  'AGENTGATE_WS_MAX_LIFETIME_MS',
  'AGENTGATE_RATE_LIMIT_PER_MIN',
  'AGENTGATE_TRUST_PROXY',
  'AGENTGATE_MAX_REQUESTS_PER_TOKEN',
  'AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_SERVICE_NAME',
];

/** Runs loadConfig and returns the ConfigError it must throw. */
function configError(env: Record<string, string>): ConfigError {
  let caught: unknown;
  try {
    loadConfig(env);
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${JSON.stringify(env)} to be rejected`).toBeInstanceOf(ConfigError);
  return caught as ConfigError;
}

function expectOneLine(message: string): void {
  expect(message.trim()).not.toBe('');
  expect(message).not.toMatch(/[\r\n]/);
}

describe('loadConfig: defaults and overrides', () => {
  it('returns the contract §7 defaults for an empty environment', () => {
    expect(loadConfig({})).toStrictEqual(DEFAULTS);
  });

  it('checks each default field by name', () => {
    const c = loadConfig({});
    expect(c.databaseUrl).toBeUndefined();
    expect(c.dataDir).toBe('.agentgate');
    expect(c.host).toBe('127.0.0.1');
    expect(c.port).toBe(8080);
    expect(c.logLevel).toBe('info');
    expect(c.adminToken).toBeUndefined();
    expect(c.dialTimeoutMs).toBe(30_000);
    expect(c.disconnectGraceMs).toBe(90_000);
    expect(c.dialBackoffMs).toBe(5_000);
    expect(c.inactiveTimeoutMs).toBe(30_000);
    expect(c.dbTimeoutMs).toBe(2_000);
    expect(c.connIdleMs).toBe(300_000);
    expect(c.maxConns).toBe(10_000);
    expect(c.bodyLimitBytes).toBe(10_485_760);
    expect(c.proxyHeadersTimeoutMs).toBe(300_000);
    expect(c.shutdownGraceMs).toBe(10_000);
    expect(c.rateLimitPerMin).toBe(0);
    expect(c.trustProxy).toEqual([]);
    expect(Object.keys(c).sort()).toEqual(Object.keys(DEFAULTS).sort());
  });

  it('returns a frozen object', () => {
    const c = loadConfig({});
    expect(Object.isFrozen(c)).toBe(true);
    expect(() => {
      (c as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(c.port).toBe(8080);
  });

  it('ignores variables it does not know', () => {
    expect(loadConfig({ PATH: '/usr/bin', AGENTGATE_UNKNOWN: 'x', NODE_ENV: 'test' })).toStrictEqual(DEFAULTS);
  });

  it('treats empty strings as unset', () => {
    const env = Object.fromEntries(VARIABLES.map((name) => [name, '']));
    expect(loadConfig(env)).toStrictEqual(DEFAULTS);
  });

  it('parses every override', () => {
    const c = loadConfig({
      DATABASE_URL: 'postgres://gate:pw@db.internal:5433/agentgate',
      AGENTGATE_DATA_DIR: '/var/lib/agentgate',
      HOST: '0.0.0.0',
      PORT: '9090',
      LOG_LEVEL: 'debug',
      AGENTGATE_ADMIN_TOKEN: 'a-sixteen-chars!',
      AGENTGATE_DIAL_TIMEOUT_MS: '15000',
      AGENTGATE_DISCONNECT_GRACE_MS: '0',
      AGENTGATE_DIAL_BACKOFF_MS: '250',
      AGENTGATE_INACTIVE_TIMEOUT_MS: '45000',
      AGENTGATE_DB_TIMEOUT_MS: '600000',
      AGENTGATE_CONN_IDLE_MS: '1',
      AGENTGATE_MAX_CONNS: '1000000',
      AGENTGATE_BODY_LIMIT_BYTES: '1024',
      AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: '86400000',
      AGENTGATE_REQUEST_TIMEOUT_MS: '500',
      AGENTGATE_MCP_CALL_TIMEOUT_MS: '60000',
      AGENTGATE_SHUTDOWN_GRACE_MS: '0',
      AGENTGATE_WS_IDLE_TIMEOUT_MS: '1000',
      AGENTGATE_WS_MAX_LIFETIME_MS: '3600000',
      AGENTGATE_RATE_LIMIT_PER_MIN: '120',
      AGENTGATE_TRUST_PROXY: '10.0.0.1, 192.168.0.0/16,::1,fd00::/8',
      AGENTGATE_MAX_REQUESTS_PER_TOKEN: '8',
      AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN: '2',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector.internal:4318/custom/traces',
      OTEL_SERVICE_NAME: 'gate-eu-1',
    });
    expect(c).toStrictEqual({
      databaseUrl: 'postgres://gate:pw@db.internal:5433/agentgate',
      dataDir: '/var/lib/agentgate',
      host: '0.0.0.0',
      port: 9090,
      logLevel: 'debug',
      adminToken: 'a-sixteen-chars!',
      dialTimeoutMs: 15_000,
      disconnectGraceMs: 0,
      dialBackoffMs: 250,
      inactiveTimeoutMs: 45_000,
      dbTimeoutMs: 600_000,
      connIdleMs: 1,
      maxConns: 1_000_000,
      bodyLimitBytes: 1024,
      proxyHeadersTimeoutMs: 86_400_000,
      requestTimeoutMs: 500,
      mcpCallTimeoutMs: 60_000,
      shutdownGraceMs: 0,
      wsIdleTimeoutMs: 1_000,
      wsMaxLifetimeMs: 3_600_000,
      rateLimitPerMin: 120,
      trustProxy: ['10.0.0.1', '192.168.0.0/16', '::1', 'fd00::/8'],
      maxRequestsPerToken: 8,
      maxWebSocketsPerToken: 2,
      tracing: { endpoint: 'https://collector.internal:4318/custom/traces', serviceName: 'gate-eu-1' },
    });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.tracing)).toBe(true);
    expect(Object.isFrozen(c.trustProxy)).toBe(true);
  });

  it.each([
    ['postgres://user:secret@localhost:5432/app'],
    ['postgresql://localhost/app'],
    ['postgres://localhost'],
  ])('accepts DATABASE_URL %s', (url) => {
    expect(loadConfig({ DATABASE_URL: url }).databaseUrl).toBe(url);
  });

  it('accepts the inclusive range ends', () => {
    expect(loadConfig({ PORT: '0' }).port).toBe(0);
    expect(loadConfig({ PORT: '65535' }).port).toBe(65535);
    expect(loadConfig({ AGENTGATE_DIAL_TIMEOUT_MS: '1' }).dialTimeoutMs).toBe(1);
    expect(loadConfig({ AGENTGATE_DIAL_TIMEOUT_MS: '3600000' }).dialTimeoutMs).toBe(3_600_000);
  });

  it.each(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])('accepts LOG_LEVEL=%s', (level) => {
    expect(loadConfig({ LOG_LEVEL: level }).logLevel).toBe(level);
  });

  it.each([
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }, 'http://127.0.0.1:4318/v1/traces'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/base/' }, 'http://collector:4318/base/v1/traces'],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector/x' }, 'https://collector/x'],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector' }, 'https://collector/'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://general:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://specific:4318/t' }, 'http://specific:4318/t'],
  ])('derives the traces endpoint from %j as the OpenTelemetry SDK does', (env, endpoint) => {
    expect(loadConfig(env).tracing.endpoint).toBe(endpoint);
  });

  it.each([['OTEL_EXPORTER_OTLP_ENDPOINT'], ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']])(
    '%s that is not an http(s) URL is named, its value never echoed',
    (name) => {
      for (const value of ['grpc://user:hunter2-pw@collector:4317', 'collector:4318', 'user:hunter2-pw@collector']) {
        const error = configError({ [name]: value });
        expectOneLine(error.message);
        expect(error.message).toContain(name);
        expect(error.message).not.toContain('hunter2-pw');
        expect(error.message).not.toContain('collector');
      }
    },
  );

  it('accepts an admin token of exactly 16 characters', () => {
    expect(loadConfig({ AGENTGATE_ADMIN_TOKEN: '0123456789abcdef' }).adminToken).toBe('0123456789abcdef');
  });
});

describe('loadConfig: bad values stop with one line naming the variable', () => {
  it.each([
    ['AGENTGATE_DIAL_TIMEOUT_MS', 'abc', 'not a number'],
    ['AGENTGATE_DIAL_TIMEOUT_MS', '1.5', 'not an integer'],
    ['AGENTGATE_DIAL_TIMEOUT_MS', '0', 'below the minimum'],
    ['AGENTGATE_DIAL_TIMEOUT_MS', '3600001', 'above the maximum'],
    ['AGENTGATE_DIAL_TIMEOUT_MS', 'Infinity', 'not finite'],
    ['AGENTGATE_DIAL_TIMEOUT_MS', '-Infinity', 'not finite'],
    ['AGENTGATE_DIAL_TIMEOUT_MS', '12\nabc', 'a value spanning lines'],
    ['AGENTGATE_DISCONNECT_GRACE_MS', '-1', 'negative'],
    ['AGENTGATE_DIAL_BACKOFF_MS', '-5000', 'negative'],
    ['AGENTGATE_INACTIVE_TIMEOUT_MS', '0', 'below the minimum'],
    ['AGENTGATE_INACTIVE_TIMEOUT_MS', '30s', 'a unit suffix'],
    ['AGENTGATE_DB_TIMEOUT_MS', '600001', 'above the maximum'],
    ['AGENTGATE_CONN_IDLE_MS', 'true', 'a boolean'],
    ['AGENTGATE_MAX_CONNS', '0', 'below the minimum'],
    ['AGENTGATE_MAX_CONNS', '1000001', 'above the maximum'],
    ['AGENTGATE_BODY_LIMIT_BYTES', '1023', 'below the minimum'],
    ['AGENTGATE_BODY_LIMIT_BYTES', '10MB', 'a unit suffix'],
    ['AGENTGATE_PROXY_HEADERS_TIMEOUT_MS', '1e400', 'overflowing to infinity'],
    ['AGENTGATE_SHUTDOWN_GRACE_MS', '-1', 'negative'],
    ['AGENTGATE_RATE_LIMIT_PER_MIN', '-1', 'negative'],
    ['AGENTGATE_RATE_LIMIT_PER_MIN', '0.5', 'not an integer'],
    ['AGENTGATE_MAX_REQUESTS_PER_TOKEN', '0', 'below the minimum'],
    ['AGENTGATE_REQUEST_TIMEOUT_MS', '0', 'below the minimum'],
    ['AGENTGATE_MAX_WEBSOCKETS_PER_TOKEN', 'many', 'not a number'],
    ['PORT', '70000', 'out of range'],
    ['PORT', '65536', 'out of range'],
    ['PORT', '-1', 'negative'],
    ['PORT', 'http', 'not a number'],
    ['PORT', 'Infinity', 'not finite'],
    ['LOG_LEVEL', 'verbose', 'an unknown level'],
    ['LOG_LEVEL', 'INFO', 'a level in the wrong case'],
    ['AGENTGATE_TRUST_PROXY', 'true', 'not an address'],
    ['AGENTGATE_TRUST_PROXY', '10.0.0.0/33', 'a prefix too long'],
    ['AGENTGATE_TRUST_PROXY', '10.0.0.1,,10.0.0.2', 'an empty entry'],
    ['AGENTGATE_TRUST_PROXY', 'proxy.internal', 'a host name'],
    ['AGENTGATE_TRUST_PROXY', '10.0.0.0/8/8', 'two prefixes'],
  ])('%s=%j (%s)', (name, value) => {
    const error = configError({ [name]: value });
    expectOneLine(error.message);
    expect(error.message).toContain(name);
    expect(error.name).toBe('ConfigError');
  });

  it('says what an integer variable allows', () => {
    const error = configError({ PORT: '70000' });
    expect(error.message).toContain('65535');
  });

  it('lists the allowed LOG_LEVEL values', () => {
    const error = configError({ LOG_LEVEL: 'verbose' });
    expect(error.message).toMatch(/info/);
    expect(error.message).toMatch(/debug/);
  });

  it.each([
    ['mysql://gate:hunter2-pw@db.internal/app', 'hunter2-pw'],
    ['http://gate:hunter2-pw@db.internal/app', 'hunter2-pw'],
    ['gate:hunter2-pw@db.internal/app', 'hunter2-pw'],
    ['host=db.internal password=hunter2-pw', 'hunter2-pw'],
  ])('DATABASE_URL that is not a postgres URL is named, its value never echoed', (url, password) => {
    const error = configError({ DATABASE_URL: url });
    expectOneLine(error.message);
    expect(error.message).toContain('DATABASE_URL');
    expect(error.message).not.toContain(password);
    expect(error.message).not.toContain(url);
    expect(error.message).not.toContain('db.internal');
  });

  it.each([['short-token'], ['fifteen-chars!!'], ['s3cr3t-p4ss']])(
    'AGENTGATE_ADMIN_TOKEN shorter than 16 characters (%s) is named, its value never echoed',
    (token) => {
      const error = configError({ AGENTGATE_ADMIN_TOKEN: token });
      expectOneLine(error.message);
      expect(error.message).toContain('AGENTGATE_ADMIN_TOKEN');
      expect(error.message).toMatch(/16/);
      expect(error.message).not.toContain(token);
    },
  );

  it('does not echo secrets when another variable is the bad one', () => {
    const error = configError({
      DATABASE_URL: 'postgres://gate:hunter2-pw@db.internal/app',
      AGENTGATE_ADMIN_TOKEN: 'an-admin-token-value-long-enough',
      PORT: '70000',
    });
    expectOneLine(error.message);
    expect(error.message).toContain('PORT');
    expect(error.message).not.toContain('hunter2-pw');
    expect(error.message).not.toContain('an-admin-token-value-long-enough');
  });
});

describe('the compiled CLI stops with one clear line', () => {
  beforeAll(() => {
    execFileSync(process.execPath, ['scripts/build-if-stale.mjs'], { cwd: root, stdio: 'pipe' });
  }, 60_000);

  function serveWith(extra: Record<string, string>): { status: number | null; stderr: string; stdout: string } {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (value !== undefined && !VARIABLES.includes(key)) env[key] = value;
    }
    const result = spawnSync(process.execPath, ['dist/src/cli.js', 'serve'], {
      cwd: root,
      env: { ...env, ...extra },
      encoding: 'utf8',
      timeout: 20_000,
    });
    return { status: result.status, stderr: result.stderr, stdout: result.stdout };
  }

  it.each([
    [{ AGENTGATE_DIAL_TIMEOUT_MS: 'abc' }, 'AGENTGATE_DIAL_TIMEOUT_MS'],
    [{ PORT: '-1' }, 'PORT'],
  ])('serve with %j exits 78 naming the variable', (extra, name) => {
    const { status, stderr, stdout } = serveWith(extra);
    expect(status).toBe(78);
    const lines = stderr.split('\n').filter((line) => line !== '');
    expect(lines).toHaveLength(1);
    expect(stderr.endsWith('\n')).toBe(true);
    expect(lines[0]).toContain(name);
    expect(stderr).not.toMatch(/^\s+at /m);
    expect(stderr).not.toMatch(/Error:|\.js:\d+/);
    expect(stdout).toBe('');
  });

  it('serve with both bad variables still prints exactly one line naming one of them', () => {
    const { status, stderr } = serveWith({ AGENTGATE_DIAL_TIMEOUT_MS: 'abc', PORT: '-1' });
    expect(status).toBe(78);
    const lines = stderr.split('\n').filter((line) => line !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/AGENTGATE_DIAL_TIMEOUT_MS|PORT/);
    expect(stderr).not.toMatch(/^\s+at /m);
  });
});
