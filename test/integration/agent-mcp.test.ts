// The reference agent's MCP server (/mcp), in-process on a real socket, driven by the official
// SDK's Client with every request signed as the gate signs it: its four tools, progress while a
// command runs, the call's abort killing the command, confinement to the root, bad arguments as
// tool errors, and what a stateless server answers to GET, DELETE, unsigned and malformed requests.
import { mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildAgentApp } from '../../src/agent/agent-app.js';
import { SIGNATURE_HEADER } from '../../src/auth/gate-signature.js';
import { GateSigningKey } from '../../src/auth/gate-signing-key.js';
import type { GateKeySource } from '../../src/agent/gate-keys.js';
import { eventually } from '../support/eventually.js';
import { readPid, running, killSurvivors } from '../support/pids.js';
import { connectClient, resultText, signedFetch, type McpClient } from '../support/mcp.js';

const AGENT_ID = '33333333-3333-4333-8333-333333333333';
const GATE_KEY = GateSigningKey.generate();
const keys: GateKeySource = { agentId: AGENT_ID, find: async (kid) => (kid === GATE_KEY.kid ? GATE_KEY.publicKey : undefined) };

let root: string;
let outside: string;
let app: Awaited<ReturnType<typeof buildAgentApp>>;
let url: string;
let mcp: McpClient;
const logs: string[] = [];

beforeAll(async () => {
  root = await realpath(await mkdtemp(path.join(os.tmpdir(), 'agentgate-mcp-root-')));
  outside = await realpath(await mkdtemp(path.join(os.tmpdir(), 'agentgate-mcp-outside-')));
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  app = await buildAgentApp({ keys, root, logger: pino({ level: 'info' }, sink), maxOutputBytes: 64 * 1024 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/mcp`;
  mcp = await connectClient(url, { fetch: signedFetch(GATE_KEY, AGENT_ID) });
});

afterAll(async () => {
  await mcp?.close();
  await app?.close();
  if (root) await rm(root, { recursive: true, force: true });
  if (outside) await rm(outside, { recursive: true, force: true });
});

const spawned: number[] = [];
// A failed assertion must not leave the processes these tests started behind.
afterEach(() => killSurvivors(spawned));

const call = (name: string, args: Record<string, unknown>) => mcp.client.callTool({ name, arguments: args });

/** A raw POST to /mcp, signed unless told otherwise. */
async function post(body: string, headers: Record<string, string> = {}, signed = true): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(signed ? { [SIGNATURE_HEADER]: GATE_KEY.sign(AGENT_ID, 'POST', '/mcp') } : {}),
      ...headers,
    },
    body,
  });
}

describe('tools', () => {
  it('lists exec, read_file, write_file and list_directory with their input schemas', async () => {
    const { tools } = await mcp.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['exec', 'list_directory', 'read_file', 'write_file']);
    const exec = tools.find((t) => t.name === 'exec')!;
    expect(exec.inputSchema.required).toEqual(['command']);
    expect(Object.keys(exec.inputSchema.properties ?? {})).toEqual(expect.arrayContaining(['command', 'args', 'cwd', 'timeoutMs']));
    expect(exec.description).toMatch(/no shell/);
  });

  it('exec returns the exit code and the output, with isError only for a failed command', async () => {
    const ok = await call('exec', { command: process.execPath, args: ['-e', 'console.log("out"); console.error("err")'] });
    expect(ok.isError).toBe(false);
    expect(ok.structuredContent).toMatchObject({ exitCode: 0, stdout: 'out\n', stderr: 'err\n', timedOut: false, aborted: false });
    expect(resultText(ok)).toMatch(/exited with code 0[\s\S]*--- stdout ---\nout\n[\s\S]*--- stderr ---\nerr/);

    const failed = await call('exec', { command: process.execPath, args: ['-e', 'process.exit(3)'] });
    expect(failed.isError).toBe(true);
    expect(failed.structuredContent).toMatchObject({ exitCode: 3 });

    const missing = await call('exec', { command: 'agentgate-no-such-command-here' });
    expect(missing.isError).toBe(true);
    expect(resultText(missing)).toMatch(/could not start/);
  });

  it('exec does not go through a shell, and runs in a cwd inside the root', async () => {
    await mkdir(path.join(root, 'sub'), { recursive: true });
    const r = await call('exec', { command: 'echo', args: ['$HOME; `id`'], cwd: 'sub' });
    expect(r.structuredContent).toMatchObject({ exitCode: 0, stdout: '$HOME; `id`\n' });
    const cwd = await call('exec', { command: process.execPath, args: ['-e', 'process.stdout.write(process.cwd())'], cwd: 'sub' });
    expect(cwd.structuredContent).toMatchObject({ stdout: path.join(root, 'sub') });
  });

  it('exec past its timeout is killed and is a tool error', async () => {
    const pidFile = path.join(root, 'mcp-timeout.pid');
    const r = await call('exec', { command: 'sh', args: ['-c', `sleep 30 & echo $! > ${pidFile}; sleep 30`], timeoutMs: 300 });
    expect(r.isError).toBe(true);
    expect(r.structuredContent).toMatchObject({ timedOut: true, exitCode: null, signal: 'SIGKILL' });
    expect(resultText(r)).toMatch(/timed out/);
    const grandchild = await readPid(pidFile);
    spawned.push(grandchild);
    await eventually(async () => !(await running(grandchild)), 2_000, `grandchild ${grandchild} to die`);
  });

  it('exec caps the output it returns and says so', async () => {
    const r = await call('exec', { command: process.execPath, args: ['-e', 'process.stdout.write("x".repeat(200000))'] });
    expect(r.structuredContent).toMatchObject({ exitCode: 0, truncated: true });
    expect((r.structuredContent as { stdout: string }).stdout).toHaveLength(64 * 1024);
  });

  it('write_file, read_file and list_directory work inside the root', async () => {
    const written = await call('write_file', { path: 'notes/hello.txt', content: 'héllo' }).catch((e: unknown) => e);
    // The directory must exist first.
    expect((written as { isError?: boolean }).isError).toBe(true);
    expect(resultText(written)).toMatch(/NOT_FOUND|no such file/);
    await mkdir(path.join(root, 'notes'), { recursive: true });
    const ok = await call('write_file', { path: 'notes/hello.txt', content: 'héllo' });
    expect(ok.isError).toBeFalsy();
    expect(ok.structuredContent).toEqual({ path: 'notes/hello.txt', bytes: Buffer.byteLength('héllo') });
    expect(await readFile(path.join(root, 'notes', 'hello.txt'), 'utf8')).toBe('héllo');

    const binary = Buffer.from([0, 1, 2, 255]);
    await call('write_file', { path: 'notes/bin', content: binary.toString('base64'), encoding: 'base64' });
    expect(await readFile(path.join(root, 'notes', 'bin'))).toEqual(binary);

    const read = await call('read_file', { path: 'notes/hello.txt' });
    expect(resultText(read)).toBe('héllo');
    const read64 = await call('read_file', { path: 'notes/bin', encoding: 'base64' });
    expect(resultText(read64)).toBe(binary.toString('base64'));

    await mkdir(path.join(root, 'notes', 'deeper'), { recursive: true });
    const listed = await call('list_directory', { path: 'notes' });
    expect(listed.structuredContent).toEqual({
      path: 'notes',
      truncated: false,
      entries: [
        { name: 'bin', type: 'file', size: 4 },
        { name: 'deeper', type: 'directory' },
        { name: 'hello.txt', type: 'file', size: Buffer.byteLength('héllo') },
      ],
    });
    expect(resultText(listed)).toBe(`bin (4 bytes)\ndeeper/\nhello.txt (${Buffer.byteLength('héllo')} bytes)`);
    const top = await call('list_directory', {});
    expect((top.structuredContent as { path: string }).path).toBe('.');
  });

  it('read_file refuses a file larger than it returns', async () => {
    await writeFile(path.join(root, 'big.bin'), Buffer.alloc(64 * 1024 + 1));
    const r = await call('read_file', { path: 'big.bin' });
    expect(r.isError).toBe(true);
    expect(resultText(r)).toMatch(/more than the 65536 bytes/);
  });

  it.each([
    ['read_file', { path: '../x' }],
    ['read_file', { path: '/etc/passwd' }],
    ['write_file', { path: '../escape.txt', content: 'x' }],
    ['list_directory', { path: '..' }],
    ['exec', { command: 'true', cwd: '/' }],
  ])('%s outside the root is a FORBIDDEN tool error (%o)', async (name, args) => {
    const r = await call(name, args);
    expect(r.isError).toBe(true);
    expect(resultText(r)).toMatch(/^FORBIDDEN: /);
  });

  it('a symlink that leads outside the root is refused, reading and writing', async () => {
    await writeFile(path.join(outside, 'secret.txt'), 'secret');
    await symlink(outside, path.join(root, 'way-out'));
    const read = await call('read_file', { path: 'way-out/secret.txt' });
    expect(read.isError).toBe(true);
    expect(resultText(read)).not.toContain('secret\n');
    const write = await call('write_file', { path: 'way-out/new.txt', content: 'x' });
    expect(write.isError).toBe(true);
    const listed = await call('list_directory', { path: 'way-out' });
    expect(listed.isError).toBe(true);
    expect(await readFile(path.join(outside, 'new.txt'), 'utf8').catch(() => 'absent')).toBe('absent');
  });

  it.each([
    ['exec', {}],
    ['exec', { command: 42 }],
    ['exec', { command: 'true', args: 'not-a-list' }],
    ['exec', { command: 'true', timeoutMs: -5 }],
    ['exec', { command: 'true', env: { 'bad name': 'x' } }],
    ['read_file', { path: '' }],
    ['write_file', { path: 'x.txt' }],
    ['write_file', { path: 'x.txt', content: 'x', encoding: 'utf16' }],
    ['no_such_tool', {}],
  ])('a bad argument or tool (%s %o) is a tool error, and the server keeps serving', async (name, args) => {
    const r = await call(name, args);
    expect(r.isError).toBe(true);
    expect(resultText(r)).toMatch(/validation|not found|Invalid/i);
    expect((await mcp.client.ping())).toEqual({});
  });
});

describe('streaming and cancellation', () => {
  it('with a progress token, exec streams its output as progress notifications before the result', async () => {
    const seen: Array<{ progress: number; message?: string; at: number }> = [];
    const script = 'let i = 0; const t = setInterval(() => { console.log("line " + i); if (++i === 4) clearInterval(t); }, 120)';
    const result = await mcp.client.callTool({ name: 'exec', arguments: { command: process.execPath, args: ['-e', script] } }, undefined, {
      onprogress: (p) => seen.push({ progress: p.progress, message: p.message, at: performance.now() }),
    });
    const doneAt = performance.now();
    expect(result.isError).toBe(false);
    expect(seen.map((p) => p.message).join('')).toBe('line 0\nline 1\nline 2\nline 3\n');
    // Progress grows, and the first chunk came well before the command ended.
    expect(seen.map((p) => p.progress)).toEqual([...seen.map((p) => p.progress)].sort((a, b) => a - b));
    expect(doneAt - seen[0]!.at).toBeGreaterThanOrEqual(250);
  });

  it('without a progress token, nothing is streamed', async () => {
    let notified = 0;
    mcp.client.setNotificationHandler((await import('@modelcontextprotocol/sdk/types.js')).ProgressNotificationSchema, () => {
      notified += 1;
    });
    const result = await call('exec', { command: process.execPath, args: ['-e', 'console.log("quiet")'] });
    expect(result.structuredContent).toMatchObject({ stdout: 'quiet\n' });
    expect(notified).toBe(0);
  });

  it("the caller's request ending aborts the call: the command tree is killed and the agent logs it", async () => {
    const other = await connectClient(url, { fetch: signedFetch(GATE_KEY, AGENT_ID) });
    const pidFile = path.join(root, 'mcp-abort.pid');
    const pending = other.client.callTool({ name: 'exec', arguments: { command: 'sh', args: ['-c', `sleep 30 & echo $! > ${pidFile}; sleep 30`], timeoutMs: 60_000 } });
    pending.catch(() => undefined);
    const grandchild = await readPid(pidFile);
    spawned.push(grandchild);
    const before = logs.filter((l) => l.includes('mcp exec aborted')).length;
    // Closing the client's transport ends its HTTP request.
    await other.close();
    await eventually(async () => !(await running(grandchild)), 2_000, `grandchild ${grandchild} to die`);
    await eventually(() => logs.filter((l) => l.includes('mcp exec aborted')).length > before, 2_000, 'the abort logged');
    const line = JSON.parse(logs.filter((l) => l.includes('mcp exec aborted')).at(-1)!) as { command: string; signal: string };
    expect(line).toMatchObject({ command: 'sh', signal: 'SIGKILL' });
  });
});

describe('HTTP', () => {
  it('refuses an unsigned request, or one signed for another path, with 401 problem+json', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    const unsigned = await post(body, {}, false);
    expect(unsigned.status).toBe(401);
    expect(unsigned.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const elsewhere = await post(body, { [SIGNATURE_HEADER]: GATE_KEY.sign(AGENT_ID, 'POST', '/exec') }, false);
    expect(elsewhere.status).toBe(401);
    expect(((await elsewhere.json()) as { detail: string }).detail).toMatch(/mismatch/);
  });

  it('answers tools/call without an initialize (stateless), as JSON-RPC over SSE', async () => {
    const res = await post(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'exec', arguments: { command: 'true' } } }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('mcp-session-id')).toBeNull();
    const text = await res.text();
    const data = JSON.parse(/^data: (.*)$/m.exec(text)![1]!) as { id: number; result: { isError: boolean } };
    expect(data).toMatchObject({ id: 7, result: { isError: false } });
  });

  it('malformed JSON and invalid JSON-RPC are JSON-RPC errors, not crashes', async () => {
    const malformed = await post('{"jsonrpc": "2.0", ');
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 }, id: null });
    const wrongVersion = await post(JSON.stringify({ jsonrpc: '1.0', id: 1, method: 'ping' }));
    expect(wrongVersion.status).toBe(400);
    expect(await wrongVersion.json()).toMatchObject({ jsonrpc: '2.0', error: { code: expect.any(Number) } });
    const unknown = await post(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'no/such/method' }));
    expect(unknown.status).toBe(200);
    expect(await unknown.text()).toMatch(/"code":-32601/);
    expect((await mcp.client.ping())).toEqual({});
  });

  it('GET and DELETE are 405 with Allow: POST (stateless: no stream, no session)', async () => {
    for (const method of ['GET', 'DELETE']) {
      const res = await fetch(url, {
        method,
        headers: { accept: 'text/event-stream', [SIGNATURE_HEADER]: GATE_KEY.sign(AGENT_ID, method, '/mcp') },
      });
      expect(res.status, method).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
      expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000 } });
    }
  });
});
