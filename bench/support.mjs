// Shared by the bench scripts: a database of their own, processes started and awaited, and a
// small client of the gate's API.
import { spawn } from 'node:child_process';
import pg from 'pg';

export const CLI = new URL('../dist/src/cli.js', import.meta.url).pathname;
export const ADMIN = 'bench-admin-token-0123456789abcdef';
export const SERVER_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A fresh database on the server, dropped by `drop()`. */
export async function createBenchDatabase(serverUrl = SERVER_URL) {
  const name = `agentgate_bench_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await admin.query(`drop database ${name} with (force)`);
      await admin.end();
    },
  };
}

/** Starts `node <args>` and resolves once its stdout matches `pattern`. */
export function startProcess(args, env, pattern) {
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
      const match = out.match(pattern);
      if (match) resolve({ child, match });
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
}

/** The gate as its own process (the load generator must not share its event loop). */
export async function startGate(databaseUrl) {
  const { child, match } = await startProcess(
    [CLI, 'serve'],
    { DATABASE_URL: databaseUrl, PORT: '0', AGENTGATE_ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'warn' },
    /listening on (http:\/\/\S+)/,
  );
  return {
    base: match[1],
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('exit', r));
    },
  };
}

export function gateClient(base) {
  return async (method, path, body, token = ADMIN) => {
    const res = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: res.status, body: await res.json().catch(() => undefined) };
  };
}

/** Resolves once the gate at `base` answers /readyz with 200. */
export async function waitReady(base) {
  for (let ready = false; !ready; ) {
    ready = await fetch(`${base}/readyz`).then((r) => r.status === 200, () => false);
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A workspace whose one agent is at `address`, kept connected by a heartbeat every 5 s until
 * `stop()`; with the agent's token.
 */
export async function connectedWorkspace(base, address) {
  const call = gateClient(base);
  const id = crypto.randomUUID();
  await call('PUT', `/workspaces/${id}`, { ownerId: crypto.randomUUID(), name: 'bench' });
  const build = await call('POST', `/workspaces/${id}/builds`, { transition: 'start', agents: [{ name: 'main', address }] });
  const agentToken = build.body.agents[0].token;
  const heartbeat = () => fetch(`${base}/agent/heartbeat`, { method: 'POST', headers: { authorization: `Bearer ${agentToken}` } });
  await heartbeat();
  const beating = setInterval(() => void heartbeat(), 5_000);
  return { id, agentToken, stop: () => clearInterval(beating) };
}
