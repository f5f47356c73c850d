import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startAppBehindFaultProxy, startTestApp, type AppBehindProxy, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/eventually.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { CLI, runCli } from '../support/process.js';
import { migrateDown, migrateUp } from '../../src/db/migrate.js';

let env: AppBehindProxy;
let database: TestDatabase;
let proxy: FaultProxy;
let t: TestApp;

beforeAll(async () => {
  // Every /readyz reads afresh here: these tests change the database under it.
  env = await startAppBehindFaultProxy({ AGENTGATE_DB_TIMEOUT_MS: '300' }, { readiness: { reuseMs: 0, migrationsEveryMs: 0 } });
  ({ t, proxy, database } = env);
});
afterAll(async () => {
  await env.close();
});

describe('operations routes cannot take the gate’s database capacity', () => {
  let ops: TestApp;
  beforeAll(async () => {
    // The production defaults: a readiness answer reused for a second, a gathering for 100 ms.
    ops = await startTestApp({ database, readiness: { metricsReuseMs: 100 } });
  });
  afterAll(async () => {
    await ops?.close();
  });
  const queries = async () => {
    const text = await ops.metrics.registry.metrics();
    return [...text.matchAll(/^agentgate_db_query_seconds_count\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  };

  it('concurrent /readyz calls share one probe: 200 of them cost one query', async () => {
    await new Promise((r) => setTimeout(r, 1_100)); // past the reuse of an earlier answer
    const before = await queries();
    const answers = await Promise.all(Array.from({ length: 200 }, () => ops.call('GET', '/readyz')));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect((await queries()) - before).toBe(1);
  });

  it('each probe is one ping: the migration state was read at start, and is not read per call', async () => {
    for (let i = 0; i < 2; i++) {
      await new Promise((r) => setTimeout(r, 1_100));
      const before = await queries();
      expect((await ops.call('GET', '/readyz')).status).toBe(200);
      expect((await queries()) - before).toBe(1);
    }
  });

  it('scrapes share one gathering (100 ms old at most), and the OpenAPI document is serialised once', async () => {
    const registry = ops.metrics.registry;
    const gather = registry.metrics.bind(registry);
    let gatherings = 0;
    // A gathering that takes a while, as a large registry's does: the scrapes meanwhile join it.
    registry.metrics = async () => {
      gatherings += 1;
      await new Promise((r) => setTimeout(r, 100));
      return gather();
    };
    try {
      const scrapes = await Promise.all(Array.from({ length: 50 }, () => ops.call('GET', '/metrics')));
      expect(scrapes.every((r) => r.status === 200 && r.text.includes('agentgate_conn_total'))).toBe(true);
      expect(gatherings).toBeLessThanOrEqual(2);
      // One after another within the 100 ms: the same gathering.
      const [a, b] = [await ops.call('GET', '/metrics'), await ops.call('GET', '/metrics')];
      expect(a.text).toBe(b.text);
      expect(gatherings).toBeLessThanOrEqual(2);
    } finally {
      registry.metrics = gather;
    }
    const [first, second] = [await ops.call('GET', '/openapi.json'), await ops.call('GET', '/openapi.json')];
    expect(first.text).toBe(second.text);
    expect(first.headers.get('content-type')).toMatch(/^application\/json/);
  });
});

describe('operations routes', () => {
  it('healthz answers without touching the database', async () => {
    proxy.setMode('cut');
    try {
      const r = await t.call('GET', '/healthz');
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ status: 'ok' });
    } finally {
      proxy.setMode('pass');
    }
  });

  it.each(['cut', 'blackhole'] as const)('readyz goes 503 when the database is unreachable (%s) and recovers', async (mode) => {
    await eventually(async () => (await t.call('GET', '/readyz')).status === 200);
    proxy.setMode(mode);
    const started = performance.now();
    const down = await t.call('GET', '/readyz');
    const elapsed = performance.now() - started;
    expect(down.status).toBe(503);
    expect(down.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(down.body).toMatchObject({ code: 'NOT_READY', retryable: true });
    expect(down.body.detail).toMatch(/database/);
    // Bounded by the database timeout (300 ms here), not by TCP timeouts.
    expect(elapsed).toBeLessThan(3_000);
    proxy.setMode('pass');
    await eventually(async () => (await t.call('GET', '/readyz')).status === 200);
  });

  it('an authenticated call with the database down answers DATABASE_UNAVAILABLE with Retry-After', async () => {
    proxy.setMode('blackhole');
    try {
      // A token never seen before cannot come from the cache.
      const r = await t.call('GET', `/workspaces/${randomUUID()}`, { token: 'agadm_never_seen_before_token_value' });
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ code: 'DATABASE_UNAVAILABLE', retryable: true });
      expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
    } finally {
      proxy.setMode('pass');
    }
  });

  it('readyz names pending migrations', async () => {
    const handle = database.open();
    await migrateDown(handle.db);
    try {
      const r = await t.call('GET', '/readyz');
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ code: 'NOT_READY' });
      expect(r.body.detail).toContain('0003_mcp_cancels');
    } finally {
      await migrateUp(handle.db);
    }
    expect((await t.call('GET', '/readyz')).status).toBe(200);
  });

  it('readyz goes 503 while draining, and API routes answer SHUTTING_DOWN', async () => {
    const other = await startTestApp();
    try {
      other.lifecycle.startDraining();
      const r = await other.call('GET', '/readyz');
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ code: 'NOT_READY', detail: expect.stringMatching(/draining/) });
      const api = await other.call('GET', `/workspaces/${randomUUID()}`, { token: ENV_ADMIN_TOKEN });
      expect(api.status).toBe(503);
      expect(api.body).toMatchObject({ code: 'SHUTTING_DOWN', retryable: true });
      expect((await other.call('GET', '/healthz')).status).toBe(200);
    } finally {
      await other.close();
    }
  });

  it('serves the OpenAPI document of every API route', async () => {
    const r = await t.call('GET', '/openapi.json');
    expect(r.status).toBe(200);
    expect(r.body.openapi).toMatch(/^3\./);
    const paths = Object.keys(r.body.paths as object);
    for (const p of ['/workspaces/{workspaceId}', '/workspaces/{workspaceId}/builds', '/tokens', '/tokens/{tokenId}', '/agent/heartbeat', '/agent/disconnect']) {
      expect(paths).toContain(p);
    }
    const put = r.body.paths['/workspaces/{workspaceId}'].put;
    expect(put.requestBody.content['application/json'].schema.required).toEqual(expect.arrayContaining(['ownerId', 'name']));
  });
});

describe('graceful shutdown', () => {
  it('on SIGTERM finishes an in-flight request, then exits 0', async () => {
    const db = await createTestDatabase();
    const cli = runCli(['serve'], {
      DATABASE_URL: db.url,
      PORT: '0',
      AGENTGATE_ADMIN_TOKEN: ENV_ADMIN_TOKEN,
      AGENTGATE_SHUTDOWN_GRACE_MS: '5000',
      LOG_LEVEL: 'warn',
    });
    try {
      const [, base] = await cli.waitFor(/listening on (http:\/\/\S+)/);
      const url = new URL(`/workspaces/${randomUUID()}`, base);
      const body = JSON.stringify({ ownerId: randomUUID(), name: 'drained' });
      // A request whose body is still arriving when the signal comes.
      const response = new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = http.request(url, {
          method: 'PUT',
          headers: {
            authorization: `Bearer ${ENV_ADMIN_TOKEN}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on('error', reject);
        req.write(body.slice(0, 10));
        setTimeout(() => {
          cli.child.kill('SIGTERM');
          setTimeout(() => req.end(body.slice(10)), 300);
        }, 200);
      });
      const r = await response;
      expect(r.status).toBe(201);
      expect(JSON.parse(r.text)).toMatchObject({ name: 'drained' });
      const exit = await cli.exited;
      expect(exit).toEqual({ code: 0, signal: null });
    } finally {
      cli.child.kill('SIGKILL');
      await db.drop();
    }
  });
});

describe('closing with a connection that never sent a byte', () => {
  it('closes it at once rather than wait for its headers timeout', async () => {
    // A headers timeout far beyond what the close may take: waiting for it would fail the test.
    const app = await startTestApp({ env: { AGENTGATE_REQUEST_TIMEOUT_MS: '60000' } });
    const { port } = new URL(app.url);
    const silent = net.connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve, reject) => silent.once('connect', resolve).once('error', reject));
    const ended = new Promise<void>((resolve) => silent.once('close', () => resolve()));
    silent.on('error', () => undefined);
    // A kept-alive connection that did send a request: closed as idle, as Node always did.
    expect((await app.call('GET', '/healthz')).status).toBe(200);
    await eventually(() => new Promise<boolean>((resolve) => app.app.server.getConnections((_e, n) => resolve(n >= 2))), 2_000, 'both connections accepted');
    const closing = app.close().then(() => 'closed' as const);
    const bound = new Promise<'waited'>((resolve) => setTimeout(() => resolve('waited'), 10_000).unref());
    expect(await Promise.race([closing, bound])).toBe('closed');
    await ended;
    expect(silent.bytesRead).toBe(0);
  });
});

describe('shutdown with the embedded database', () => {
  it('Ctrl-C (SIGINT to the whole process group) drains, stops the database and exits 0', { timeout: 40_000 }, async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-sigint-'));
    await chmod(dir, 0o755); // the embedded server may run as another user (as root)
    // Its own process group, as a terminal would make it: the signal reaches PostgreSQL too.
    const child = spawn(process.execPath, [CLI, 'serve'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, AGENTGATE_DATA_DIR: dir, PORT: '0', LOG_LEVEL: 'info', AGENTGATE_ADMIN_TOKEN: ENV_ADMIN_TOKEN },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no start: ${out}`)), 30_000);
        child.stdout.on('data', () => {
          if (out.includes('listening on')) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const pid = child.pid!;
      process.kill(-pid, 'SIGINT');
      const started = Date.now();
      expect(await exited).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(out).toContain('"msg":"stopped"');
      expect(existsSync(path.join(dir, 'pgdata', 'postmaster.pid'))).toBe(false);
    } finally {
      child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the first admin token', () => {
  it('is generated and printed once at first start when none exists, and works', async () => {
    const db = await createTestDatabase();
    const env = { DATABASE_URL: db.url, PORT: '0', LOG_LEVEL: 'warn' };
    try {
      const first = runCli(['serve'], env);
      const [, base] = await first.waitFor(/listening on (http:\/\/\S+)/);
      const [, token] = await first.waitFor(/admin token \(shown once, keep it\): (agadm_\S+)/);
      const r = await fetch(`${base}/workspaces/${randomUUID()}`, { headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(404);
      first.child.kill('SIGTERM');
      expect((await first.exited).code).toBe(0);
      expect(first.stdout() + first.stderr()).not.toContain(`${token}"`); // never inside a log line

      const second = runCli(['serve'], env);
      await second.waitFor(/listening on/);
      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
      expect(second.stdout()).not.toMatch(/admin token/);
    } finally {
      await db.drop();
    }
  });
});
