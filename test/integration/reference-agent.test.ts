// The reference agent's HTTP service, in-process on a real socket: the gate signature on every
// route but GET /health, exec (process tree killed on timeout and on abort, output capped),
// streaming exec, and files confined to the root (traversal and symlink escapes refused).
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Writable } from 'node:stream';
import { buildAgentApp } from '../../src/agent/agent-app.js';
import { createLogger } from '../../src/logger.js';
import { eventually } from '../support/eventually.js';
import { readPid, running, killSurvivors } from '../support/pids.js';
import { SIGNATURE_HEADER } from '../../src/auth/gate-signature.js';
import { GateSigningKey } from '../../src/auth/gate-signing-key.js';
import type { GateKeySource } from '../../src/agent/gate-keys.js';

// The gate's key as the agent would learn it from GET /agent/keys, fixed for this suite.
const AGENT_ID = '11111111-1111-4111-8111-111111111111';
const GATE_KEY = GateSigningKey.generate();
const keys: GateKeySource = { agentId: AGENT_ID, find: async (kid) => (kid === GATE_KEY.kid ? GATE_KEY.publicKey : undefined) };
const sign = (method: string, pathAndQuery: string, nowMs?: number) => GATE_KEY.sign(AGENT_ID, method, pathAndQuery, nowMs);

type AgentApp = Awaited<ReturnType<typeof buildAgentApp>>;

let root: string;
let outside: string;
let app: AgentApp;
let base: string;
let capped: AgentApp;
let cappedBase: string;

async function listen(a: AgentApp): Promise<string> {
  await a.listen({ host: '127.0.0.1', port: 0 });
  const address = a.server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
}

beforeAll(async () => {
  root = await realpath(await mkdtemp(path.join(os.tmpdir(), 'agentgate-agent-root-')));
  outside = await realpath(await mkdtemp(path.join(os.tmpdir(), 'agentgate-agent-outside-')));
  const logger = pino({ level: 'silent' });
  app = await buildAgentApp({ keys, root, logger });
  base = await listen(app);
  capped = await buildAgentApp({ keys, root, logger, maxOutputBytes: 1000 });
  cappedBase = await listen(capped);
});

afterAll(async () => {
  await app?.close();
  await capped?.close();
  if (root) await rm(root, { recursive: true, force: true });
  if (outside) await rm(outside, { recursive: true, force: true });
});

interface SendOptions {
  body?: unknown;
  raw?: Buffer | string;
  /** Signature header to send instead of a fresh valid one; null sends none. */
  auth?: string | null;
  signal?: AbortSignal;
  at?: string;
}

/** Sends a request signed for exactly the method and path-and-query that goes on the wire. */
async function send(method: string, pathAndQuery: string, options: SendOptions = {}): Promise<Response> {
  const url = new URL(pathAndQuery, options.at ?? base);
  const headers: Record<string, string> = {};
  const auth = options.auth === undefined ? sign(method, url.pathname + url.search) : options.auth;
  if (auth !== null) headers[SIGNATURE_HEADER] = auth;
  let body: string | Buffer | undefined;
  if (options.raw !== undefined) {
    body = options.raw;
    headers['content-type'] = 'application/octet-stream';
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  }
  return fetch(url, { method, headers, body, signal: options.signal });
}

// why: tests read arbitrary JSON bodies and assert on their fields.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function json(res: Response): Promise<any> {
  return JSON.parse(await res.text());
}

async function expectProblem(res: Response, status: number, code: string): Promise<{ detail: string }> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const body = (await json(res)) as { status: number; code: string; detail: string };
  expect(body).toMatchObject({ status, code });
  return body;
}

const exec = (body: unknown, options: SendOptions = {}) => send('POST', '/exec', { ...options, body });
const filePath = (p: string) => `/files?path=${encodeURIComponent(p)}`;

const spawned: number[] = [];
// A failed assertion must not leave the processes these tests started behind.
afterEach(() => killSurvivors(spawned));

describe('gate signature', () => {
  it('GET /health is open without a signature', async () => {
    const res = await send('GET', '/health', { auth: null });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ status: 'ok' });
  });

  it('a missing signature is 401 UNAUTHENTICATED problem+json', async () => {
    const body = await expectProblem(await exec({ command: process.execPath, args: ['-e', ''] }, { auth: null }), 401, 'UNAUTHENTICATED');
    expect(body.detail).toMatch(/missing/);
    await expectProblem(await send('GET', filePath('x'), { auth: null }), 401, 'UNAUTHENTICATED');
  });

  it('a signature made with a key the gate did not publish is refused', async () => {
    const other = GateSigningKey.generate().sign(AGENT_ID, 'POST', '/exec');
    const body = await expectProblem(await exec({ command: process.execPath, args: ['-e', ''] }, { auth: other }), 401, 'UNAUTHENTICATED');
    expect(body.detail).toMatch(/unknown/);
  });

  it('a signature made for another agent is refused', async () => {
    const forOther = GATE_KEY.sign('22222222-2222-4222-8222-222222222222', 'POST', '/exec');
    const body = await expectProblem(await exec({ command: process.execPath, args: ['-e', ''] }, { auth: forOther }), 401, 'UNAUTHENTICATED');
    expect(body.detail).toMatch(/mismatch/);
  });

  it('a signature under a published kid but made with another private key is refused', async () => {
    const forged = GateSigningKey.generate().sign(AGENT_ID, 'POST', '/exec').replace(/^v2\.[^.]+\./, `v2.${GATE_KEY.kid}.`);
    const body = await expectProblem(await exec({ command: process.execPath, args: ['-e', ''] }, { auth: forged }), 401, 'UNAUTHENTICATED');
    expect(body.detail).toMatch(/mismatch/);
  });

  it('a signature for another method or another path is refused', async () => {
    const getSigned = sign('GET', '/exec');
    expect((await exec({ command: process.execPath, args: ['-e', ''] }, { auth: getSigned })).status).toBe(401);
    await writeFile(path.join(root, 'sig-a.txt'), 'a');
    const forA = sign('GET', filePath('sig-a.txt'));
    // Same route, other query: the signature covers the query too.
    const body = await expectProblem(await send('GET', filePath('sig-b.txt'), { auth: forA }), 401, 'UNAUTHENTICATED');
    expect(body.detail).toMatch(/mismatch/);
    const forExec = sign('POST', '/exec');
    expect((await send('POST', '/exec/stream', { auth: forExec, body: { command: process.execPath } })).status).toBe(401);
    // The right one works.
    const ok = await send('GET', filePath('sig-a.txt'), { auth: forA });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('a');
  });

  it.each([
    ['no version', () => sign('POST', '/exec').replace(/^v2\./, '')],
    ['another version', () => sign('POST', '/exec').replace(/^v2\./, 'v3.')],
    ['a short signature', () => sign('POST', '/exec').slice(0, -2)],
    ['a short nonce', () => sign('POST', '/exec').replace(/^(v2\.[^.]+\.\d+\.)../, '$1')],
    ['a padded signature', () => `${sign('POST', '/exec')}==`],
    ['a non-numeric time', () => sign('POST', '/exec').replace(/^(v2\.[^.]+)\.\d+/, '$1.now')],
    ['a v1 HMAC', () => `v1.${Math.floor(Date.now() / 1000)}.${'ab'.repeat(32)}`],
    ['garbage', () => 'Bearer something'],
  ])('a malformed signature (%s) is refused', async (_name, make) => {
    const body = await expectProblem(await exec({ command: process.execPath, args: ['-e', ''] }, { auth: make() }), 401, 'UNAUTHENTICATED');
    expect(body.detail).toMatch(/malformed/);
  });

  it('a signature 61 s in the past or future is expired; 59 s either way is accepted', async () => {
    const body = { command: process.execPath, args: ['-e', ''] };
    for (const offset of [-61_000, 61_000]) {
      const auth = sign('POST', '/exec', Date.now() + offset);
      const problem = await expectProblem(await exec(body, { auth }), 401, 'UNAUTHENTICATED');
      expect(problem.detail).toMatch(/expired/);
    }
    for (const offset of [-59_000, 59_000]) {
      const auth = sign('POST', '/exec', Date.now() + offset);
      const res = await exec(body, { auth });
      expect(res.status, `offset ${offset}`).toBe(200);
      expect((await json(res)).exitCode).toBe(0);
    }
  });

  it('a replay of a header that was accepted is refused, within the window and outside it', async () => {
    await writeFile(path.join(root, 'replay.txt'), 'r');
    const header = sign('GET', filePath('replay.txt'));
    expect((await send('GET', filePath('replay.txt'), { auth: header })).status).toBe(200);
    const replayed = await expectProblem(await send('GET', filePath('replay.txt'), { auth: header }), 401, 'UNAUTHENTICATED');
    expect(replayed.detail).toMatch(/replayed/);
    // Only the agent's clock moves: 61 s later the very same header is stale.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 61_000 });
    try {
      const body = await expectProblem(await send('GET', filePath('replay.txt'), { auth: header }), 401, 'UNAUTHENTICATED');
      expect(body.detail).toMatch(/expired/);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('POST /exec', () => {
  it('runs a command and reports exit code, stdout, stderr and duration', async () => {
    const res = await exec({ command: process.execPath, args: ['-e', 'console.log("out"); console.error("err")'] });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({ exitCode: 0, signal: null, stdout: 'out\n', stderr: 'err\n', truncated: false, timedOut: false, aborted: false });
    expect(typeof body.durationMs).toBe('number');
    expect(body.durationMs).toBeGreaterThanOrEqual(0);
    expect(body.spawnError).toBeUndefined();
  });

  it('reports a non-zero exit code as a result, not an error', async () => {
    const res = await exec({ command: process.execPath, args: ['-e', 'process.exit(3)'] });
    expect(res.status).toBe(200);
    expect(await json(res)).toMatchObject({ exitCode: 3, timedOut: false });
  });

  it('passes stdin', async () => {
    const res = await exec({ command: process.execPath, args: ['-e', 'process.stdin.pipe(process.stdout)'], stdin: 'hello\nworld' });
    expect(res.status).toBe(200);
    expect((await json(res)).stdout).toBe('hello\nworld');
  });

  it('passes env, over a minimal environment of its own', async () => {
    const script = 'process.stdout.write(JSON.stringify({ foo: process.env.AG_TEST_FOO, home: process.env.HOME, leaked: process.env.VITEST ?? null }))';
    const res = await exec({ command: process.execPath, args: ['-e', script], env: { AG_TEST_FOO: 'bar baz' } });
    expect(res.status).toBe(200);
    expect(JSON.parse((await json(res)).stdout)).toEqual({ foo: 'bar baz', home: root, leaked: null });
  });

  it('runs in the root by default and in a cwd inside the root', async () => {
    await mkdir(path.join(root, 'sub', 'dir'), { recursive: true });
    const cwdOf = async (cwd?: string) => {
      const res = await exec({ command: process.execPath, args: ['-e', 'process.stdout.write(process.cwd())'], ...(cwd === undefined ? {} : { cwd }) });
      expect(res.status).toBe(200);
      return (await json(res)).stdout as string;
    };
    expect(await cwdOf()).toBe(root);
    expect(await cwdOf('sub/dir')).toBe(path.join(root, 'sub', 'dir'));
    expect(await cwdOf(path.join(root, 'sub'))).toBe(path.join(root, 'sub'));
  });

  it.each(['..', '/', '/etc', 'sub/../..'])('a cwd outside the root (%s) is 403', async (cwd) => {
    await expectProblem(await exec({ command: process.execPath, args: ['-e', ''], cwd }), 403, 'FORBIDDEN');
  });

  it('a cwd that does not exist is 404, one that is a file is 400', async () => {
    await expectProblem(await exec({ command: process.execPath, args: ['-e', ''], cwd: 'no-such-dir' }), 404, 'NOT_FOUND');
    await writeFile(path.join(root, 'a-file'), 'x');
    await expectProblem(await exec({ command: process.execPath, args: ['-e', ''], cwd: 'a-file' }), 400, 'INVALID_REQUEST');
  });

  it('a command that does not exist is 400', async () => {
    const body = await expectProblem(await exec({ command: 'agentgate-no-such-command-here', args: [] }), 400, 'INVALID_REQUEST');
    expect(body.detail).toMatch(/could not be started/);
  });

  it('a timeout kills the whole process tree', async () => {
    const pidFile = path.join(root, 'timeout-child.pid');
    const started = performance.now();
    const res = await exec({ command: 'sh', args: ['-c', `sleep 30 & echo $! > ${pidFile}; sleep 30`], timeoutMs: 300 });
    const elapsed = performance.now() - started;
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({ timedOut: true, aborted: false, exitCode: null, signal: 'SIGKILL' });
    expect(elapsed).toBeLessThan(5_000);
    const grandchild = await readPid(pidFile);
    spawned.push(grandchild);
    await eventually(async () => !(await running(grandchild)), 1_000, `grandchild ${grandchild} to die`);
  });

  it('a process that left the group and holds the output does not hold the answer', async () => {
    const pidFile = path.join(root, 'escaped.pid');
    const started = performance.now();
    // setsid puts the sleeper in a session of its own, out of reach of the group kill; it keeps
    // the stdout pipe open.
    const res = await exec({ command: 'sh', args: ['-c', `setsid sleep 30 & echo $! > ${pidFile}; echo done`], timeoutMs: 5_000 });
    const elapsed = performance.now() - started;
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toMatchObject({ exitCode: 0, timedOut: false, stdout: 'done\n' });
    expect(elapsed).toBeLessThan(3_000);
    const escaped = await readPid(pidFile);
    spawned.push(escaped);
  });

  it('an aborted request kills the whole process tree', async () => {
    const pidFile = path.join(root, 'abort-child.pid');
    const controller = new AbortController();
    const pending = exec({ command: 'sh', args: ['-c', `sleep 30 & echo $! > ${pidFile}; sleep 30`], timeoutMs: 60_000 }, { signal: controller.signal });
    pending.catch(() => undefined);
    const grandchild = await readPid(pidFile);
    spawned.push(grandchild);
    // A moment for the tree to run (and, were it broken, die) before the abort.
    await new Promise((r) => setTimeout(r, 200));
    expect(await running(grandchild)).toBe(true);
    controller.abort();
    await expect(pending).rejects.toThrow();
    await eventually(async () => !(await running(grandchild)), 1_000, `grandchild ${grandchild} to die after the abort`);
  });

  it('caps output at maxOutputBytes and says so', async () => {
    const res = await exec(
      { command: process.execPath, args: ['-e', 'process.stdout.write("x".repeat(5000)); process.stderr.write("e".repeat(10))'] },
      { at: cappedBase },
    );
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.truncated).toBe(true);
    expect(body.exitCode).toBe(0);
    expect(body.stdout).toHaveLength(1000);
    expect(body.stdout).toBe('x'.repeat(1000));
    expect(body.stderr).toBe('e'.repeat(10));
  });

  it('output under the cap is not truncated', async () => {
    const res = await exec({ command: process.execPath, args: ['-e', 'process.stdout.write("y".repeat(1000))'] }, { at: cappedBase });
    const body = await json(res);
    expect(body.truncated).toBe(false);
    expect(body.stdout).toHaveLength(1000);
  });

  it('refuses unknown fields and a missing command with 400 problem+json', async () => {
    await expectProblem(await exec({ command: process.execPath, args: [], shell: true }), 400, 'INVALID_REQUEST');
    await expectProblem(await exec({ args: ['-e', ''] }), 400, 'INVALID_REQUEST');
    await expectProblem(await exec({ command: '' }), 400, 'INVALID_REQUEST');
    await expectProblem(await exec({ command: process.execPath, env: { 'BAD-NAME': 'x' } }), 400, 'INVALID_REQUEST');
    await expectProblem(await exec({ command: process.execPath, timeoutMs: 0 }), 400, 'INVALID_REQUEST');
    await expectProblem(await send('POST', '/exec', { raw: '{"command":' }), 400, 'INVALID_REQUEST');
  });

  it('an env name outside [A-Za-z_][A-Za-z0-9_]* is 400', async () => {
    for (const name of ['BAD-NAME', 'A=B', '1ABC', '']) {
      await expectProblem(await exec({ command: process.execPath, args: ['-e', ''], env: { [name]: 'x' } }), 400, 'INVALID_REQUEST');
    }
  });

  it.each([
    ['the command', { command: 'no\u0000de' }],
    ['an argument', { command: process.execPath, args: ['-e', '\u0000'] }],
    ['an env value', { command: process.execPath, args: ['-e', ''], env: { A: 'x\u0000' } }],
  ])('a NUL byte in %s is 400, not an internal error', async (_where, body) => {
    const problem = await expectProblem(await exec(body), 400, 'INVALID_REQUEST');
    expect(problem.detail).toMatch(/could not be started/);
  });
});

describe('POST /exec/stream', () => {
  it('streams NDJSON lines as output comes and ends with the exit line', async () => {
    const started = performance.now();
    const res = await send('POST', '/exec/stream', { body: { command: 'sh', args: ['-c', 'echo a; sleep 1; echo b >&2'] } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    const lines: { at: number; value: Record<string, unknown> }[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        lines.push({ at: performance.now() - started, value: JSON.parse(buffered.slice(0, nl)) });
        buffered = buffered.slice(nl + 1);
      }
    }
    expect(buffered).toBe('');
    expect(lines.map((l) => l.value)).toEqual([
      { stream: 'stdout', data: 'a\n' },
      { stream: 'stderr', data: 'b\n' },
      { exit: expect.objectContaining({ exitCode: 0, timedOut: false, aborted: false, truncated: false }) },
    ]);
    const exitLine = lines[2]!.value.exit as Record<string, unknown>;
    expect(exitLine).not.toHaveProperty('stdout');
    expect(typeof exitLine.durationMs).toBe('number');
    // The first line came while the command was still sleeping, not with the end.
    expect(lines[0]!.at).toBeLessThan(700);
    expect(lines[2]!.at - lines[0]!.at).toBeGreaterThan(500);
  });

  it('a command that cannot be started ends the stream with an exit line naming the error', async () => {
    for (const command of ['agentgate-no-such-command-here', 'no\u0000de']) {
      const res = await send('POST', '/exec/stream', { body: { command } });
      expect(res.status).toBe(200);
      const lines = (await res.text())
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { exit: { spawnError?: string; exitCode: number | null } });
      expect(lines).toHaveLength(1);
      expect(lines[0]!.exit.spawnError).toEqual(expect.any(String));
      expect(lines[0]!.exit.exitCode).not.toBe(0);
    }
  });

  it('refuses a cwd outside the root before starting to stream', async () => {
    await expectProblem(await send('POST', '/exec/stream', { body: { command: process.execPath, cwd: '/' } }), 403, 'FORBIDDEN');
  });
});

describe('GET/PUT /files', () => {
  it('round-trips 1 MiB of binary', async () => {
    const data = randomBytes(1024 * 1024);
    await mkdir(path.join(root, 'bin'));
    const ok = await send('PUT', filePath('bin/blob.dat'), { raw: data });
    expect(ok.status).toBe(200);
    expect(await json(ok)).toEqual({ path: path.join('bin', 'blob.dat'), bytes: data.length });
    expect((await readFile(path.join(root, 'bin', 'blob.dat'))).equals(data)).toBe(true);
    const get = await send('GET', filePath('bin/blob.dat'));
    expect(get.status).toBe(200);
    expect(get.headers.get('content-type')).toBe('application/octet-stream');
    expect(get.headers.get('content-length')).toBe(String(data.length));
    expect(Buffer.from(await get.arrayBuffer()).equals(data)).toBe(true);
  });

  it('PUT replaces an existing file', async () => {
    expect((await send('PUT', filePath('replace.txt'), { raw: 'one' })).status).toBe(200);
    expect((await send('PUT', filePath('replace.txt'), { raw: 'two' })).status).toBe(200);
    expect(await (await send('GET', filePath('replace.txt'))).text()).toBe('two');
  });

  it('GET of a missing file is 404', async () => {
    await expectProblem(await send('GET', filePath('no-such-file.txt')), 404, 'NOT_FOUND');
  });

  it('PUT into a directory that does not exist is 404', async () => {
    await expectProblem(await send('PUT', filePath('no-such-dir/x.txt'), { raw: 'x' }), 404, 'NOT_FOUND');
    // The root itself and directories are not files: nothing is written beside them.
    for (const dir of ['.', './', 'bin']) {
      await mkdir(path.join(root, 'bin'), { recursive: true });
      await expectProblem(await send('PUT', filePath(dir), { raw: 'x' }), 400, 'INVALID_REQUEST');
    }
    expect((await readdir(path.dirname(root))).filter((n) => n.endsWith('.part'))).toEqual([]);
    // A name that merely starts with two dots stays inside.
    expect((await send('PUT', filePath('..dots.txt'), { raw: 'in' })).status).toBe(200);
    expect(existsSync(path.join(root, 'no-such-dir'))).toBe(false);
  });

  it.each(['../x', '/etc/passwd', 'a/../../x', '..', '../elsewhere/y', 'sub/../../../x'])('traversal (%s) is 403 for GET and PUT', async (p) => {
    await expectProblem(await send('GET', filePath(p)), 403, 'FORBIDDEN');
    await expectProblem(await send('PUT', filePath(p), { raw: 'pwned' }), 403, 'FORBIDDEN');
  });

  it('a symlink to a directory outside the root is refused for GET and PUT', async () => {
    await writeFile(path.join(outside, 'secret.txt'), 'secret');
    await symlink(outside, path.join(root, 'escape'));
    await expectProblem(await send('GET', filePath('escape/secret.txt')), 403, 'FORBIDDEN');
    await expectProblem(await send('PUT', filePath('escape/new.txt'), { raw: 'pwned' }), 403, 'FORBIDDEN');
    await expectProblem(await send('PUT', filePath('escape/secret.txt'), { raw: 'pwned' }), 403, 'FORBIDDEN');
    expect(existsSync(path.join(outside, 'new.txt'))).toBe(false);
    expect(await readFile(path.join(outside, 'secret.txt'), 'utf8')).toBe('secret');
    // Nor can a command be run there.
    await expectProblem(await exec({ command: process.execPath, args: ['-e', ''], cwd: 'escape' }), 403, 'FORBIDDEN');
  });

  it('a symlink to a file outside the root is refused', async () => {
    await writeFile(path.join(outside, 'file.txt'), 'outside');
    await symlink(path.join(outside, 'file.txt'), path.join(root, 'out-link.txt'));
    await expectProblem(await send('GET', filePath('out-link.txt')), 403, 'FORBIDDEN');
    await expectProblem(await send('PUT', filePath('out-link.txt'), { raw: 'pwned' }), 403, 'FORBIDDEN');
    expect(await readFile(path.join(outside, 'file.txt'), 'utf8')).toBe('outside');
  });

  it('a PUT onto a dangling symlink replaces the link and writes nothing outside', async () => {
    const target = path.join(outside, 'created-through-link.txt');
    await symlink(target, path.join(root, 'dangling'));
    const res = await send('PUT', filePath('dangling'), { raw: 'inside' });
    expect(res.status).toBe(200);
    expect(existsSync(target)).toBe(false);
    expect((await lstat(path.join(root, 'dangling'))).isSymbolicLink()).toBe(false);
    expect(await readFile(path.join(root, 'dangling'), 'utf8')).toBe('inside');
  });

  it('a symlink to a file inside the root works', async () => {
    await mkdir(path.join(root, 'real'), { recursive: true });
    await writeFile(path.join(root, 'real', 'data.txt'), 'through the link');
    await symlink(path.join(root, 'real', 'data.txt'), path.join(root, 'in-link.txt'));
    await symlink('real', path.join(root, 'in-dir'));
    const get = await send('GET', filePath('in-link.txt'));
    expect(get.status).toBe(200);
    expect(await get.text()).toBe('through the link');
    expect(await (await send('GET', filePath('in-dir/data.txt'))).text()).toBe('through the link');
    const put = await send('PUT', filePath('in-dir/new.txt'), { raw: 'via dir link' });
    expect(put.status).toBe(200);
    expect(await readFile(path.join(root, 'real', 'new.txt'), 'utf8')).toBe('via dir link');
  });

  it('GET of a directory is 400, a missing path query is 400', async () => {
    await mkdir(path.join(root, 'a-dir'), { recursive: true });
    await expectProblem(await send('GET', filePath('a-dir')), 400, 'INVALID_REQUEST');
    await expectProblem(await send('GET', '/files'), 400, 'INVALID_REQUEST');
    await expectProblem(await send('GET', '/files?path=x&other=y'), 400, 'INVALID_REQUEST');
  });
});

describe('logs', () => {
  it("log the path and the query's parameter names, never their values", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    // The logger the `agent` command gives the service.
    const logged = await buildAgentApp({ keys, root, logger: createLogger('info', sink).child({ component: 'agent' }) });
    try {
      const at = await listen(logged);
      await writeFile(path.join(root, 'logged.txt'), 'x');
      const res = await send('GET', '/files?path=logged.txt&apikey=hunter2-in-query', { at });
      expect(res.status).toBe(400); // apikey is no parameter of /files
      const ok = await send('GET', '/files?path=logged.txt', { at });
      expect(ok.status).toBe(200);
      await ok.text();
      // Each request's last line (with its response time) is written after its response.
      await eventually(() => lines.join('').split('"responseTime"').length - 1 >= 2, 5_000, 'both requests logged as completed');
      const all = lines.join('');
      expect(all).not.toContain('hunter2-in-query');
      expect(all).not.toContain('logged.txt');
      expect(all).toContain('/files?path&apikey');
    } finally {
      await logged.close();
    }
  });
});
