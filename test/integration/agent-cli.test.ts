// The `agentgate` command as real processes: help, usage and configuration errors, migrate,
// token create (the token works against the service), and the reference agent end to end
// through the gate (connected, proxied exec, goodbye on SIGTERM). The agent's heartbeat loop
// is checked in-process against a gate that is down, then recovers.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/eventually.js';
import { agentStatus, conn, createWorkspace } from '../support/gate-fixtures.js';
import { runCli, type CliProcess } from '../support/process.js';
import { freePort } from '../../src/db/embedded.js';
import { HeartbeatLoop } from '../../src/agent/heartbeat.js';

let database: TestDatabase;
let t: TestApp;
let env: Record<string, string>;

beforeAll(async () => {
  database = await createTestDatabase();
  t = await startTestApp({ database });
  env = { DATABASE_URL: database.url, AGENTGATE_ADMIN_TOKEN: ENV_ADMIN_TOKEN, LOG_LEVEL: 'warn' };
});

afterAll(async () => {
  await t?.close();
  await database?.drop();
});

/** Runs the command to its end; the process is killed if the test gives up on it. */
async function run(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = runCli(args, { ...env, ...extraEnv });
  try {
    const { code } = await cli.exited;
    return { code, stdout: cli.stdout(), stderr: cli.stderr() };
  } finally {
    cli.child.kill('SIGKILL');
  }
}

describe('help', () => {
  it('agentgate --help and every command --help exit 0 with usage on stdout', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--help'], /^usage: agentgate <command>[\s\S]*serve[\s\S]*migrate[\s\S]*token create[\s\S]*agent/],
      [['serve', '--help'], /^usage: agentgate serve/],
      [['migrate', '--help'], /^usage: agentgate migrate up\|down\|status/],
      [['token', '--help'], /^usage: agentgate token create --scope conn\|admin/],
      [['agent', '--help'], /^usage: agentgate agent --gate <url> \(--token-file <path>\|-\) --listen <host:port>/],
    ];
    // Help never needs a database: run it with none configured.
    const results = await Promise.all(cases.map(([args]) => run(args, { DATABASE_URL: '' })));
    results.forEach((r, i) => {
      const [args, usage] = cases[i]!;
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout, args.join(' ')).toMatch(usage);
      expect(r.stderr, args.join(' ')).toBe('');
    });
    expect(results[4]!.stdout).toMatch(/--heartbeat-ms/);
    expect(results[3]!.stdout).toMatch(/--owner <uuid>/);
  });
});

describe('usage errors exit 64 with one line on stderr', () => {
  const uuid = '0b7f3c8e-4a57-4b8e-9d43-2d2d0f6f7a10';
  const agentOk = ['--gate', 'http://127.0.0.1:9', '--token', 'agagt_x', '--listen', '127.0.0.1:0'];
  const withFlag = (flag: string, value: string) => {
    const args = [...agentOk];
    args[args.indexOf(flag) + 1] = value;
    return ['agent', ...args];
  };
  // One process each, so they run side by side.
  const cases: Array<[string, string[], RegExp]> = [
    ['an unknown command', ['frobnicate'], /unknown command "frobnicate"/],
    ['agent without flags', ['agent'], /--gate is required/],
    ['agent without --listen', ['agent', '--gate', 'http://127.0.0.1:9', '--token', 'agagt_x'], /--listen is required/],
    ['agent without a token', ['agent', '--gate', 'http://127.0.0.1:9', '--listen', '127.0.0.1:0'], /--token-file, --token or AGENTGATE_AGENT_TOKEN is required/],
    ['agent with --token and --token-file', ['agent', ...agentOk, '--token-file', '-'], /give --token or --token-file, not both/],
    ['agent with a bad --listen', withFlag('--listen', '127.0.0.1:70000'), /--listen must be host:port/],
    ['agent with a bad --gate', withFlag('--gate', 'ftp://127.0.0.1/'), /--gate must be an http: or https: URL/],
    ['agent with a bad --heartbeat-ms', ['agent', ...agentOk, '--heartbeat-ms', '5'], /--heartbeat-ms must be an integer/],
    ['token create without --scope', ['token', 'create'], /--scope must be conn or admin/],
    ['token create with a bad --owner', ['token', 'create', '--scope', 'conn', '--owner', 'bob'], /--owner must be a UUID/],
    ['token create --owner with --scope admin', ['token', 'create', '--scope', 'admin', '--owner', uuid], /--owner is only allowed with --scope conn/],
    ['migrate sideways', ['migrate', 'sideways'], /migrate needs exactly one of: up, down, status/],
  ];

  it.concurrent.for(cases)('%s', async ([, args, problem], { expect }) => {
    const r = await run(args);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/^agentgate: [^\n]+\n$/);
    expect(r.stderr).toMatch(problem);
    expect(r.stdout).toBe('');
  });

  it.concurrent('a bad configuration exits 78 with one line naming the variable', async ({ expect }) => {
    const r = await run(['migrate', 'status'], { AGENTGATE_DIAL_TIMEOUT_MS: 'soon' });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/^agentgate: [^\n]*AGENTGATE_DIAL_TIMEOUT_MS[^\n]*\n$/);
    expect(r.stdout).toBe('');
  });
});

describe('migrate', () => {
  it('status lists applied migrations; down reverts, status shows pending, up re-applies', async () => {
    const own = await createTestDatabase();
    const dbEnv = { DATABASE_URL: own.url };
    try {
      const status = await run(['migrate', 'status'], dbEnv);
      expect(status.code).toBe(0);
      expect(status.stdout).toMatch(/^applied {2}0001_initial {2}\d{4}-\d\d-\d\dT/m);
      expect(status.stdout).toMatch(/^applied {2}0003_mcp_cancels {2}\d{4}-\d\d-\d\dT/m);
      expect(status.stdout).not.toMatch(/pending/);

      const down = await run(['migrate', 'down'], dbEnv);
      expect(down.code).toBe(0);
      expect(down.stdout).toBe('reverted 0003_mcp_cancels\n');

      const pending = await run(['migrate', 'status'], dbEnv);
      expect(pending.code).toBe(0);
      expect(pending.stdout).toMatch(/^applied {2}0001_initial {2}/m);
      expect(pending.stdout).toMatch(/^pending {2}0003_mcp_cancels$/m);

      const up = await run(['migrate', 'up'], dbEnv);
      expect(up.code).toBe(0);
      expect(up.stdout).toBe('applied 0003_mcp_cancels\n');
    } finally {
      await own.drop();
    }
  });
});

describe('token create', () => {
  it('prints exactly a conn token confined to its owner, which the service accepts', async () => {
    const owner = randomUUID();
    const r = await run(['token', 'create', '--scope', 'conn', '--owner', owner, '--name', 'x']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^agcon_[A-Za-z0-9_-]{43}\n$/);
    expect(r.stderr).toMatch(new RegExp(`created conn token .* for owner ${owner}`));
    const token = r.stdout.trim();

    // Accepted (not 401): an unknown workspace is simply not found.
    const unknown = await agentStatus(t, randomUUID(), token);
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe('WORKSPACE_NOT_FOUND');
    expect((await agentStatus(t, randomUUID(), 'agcon_not-a-real-token')).status).toBe(401);

    // Confined to its owner: the owner's workspace is visible, another owner's is not.
    const mine = await createWorkspace(t, [], owner);
    const theirs = await createWorkspace(t, []);
    expect((await agentStatus(t, mine.id, token)).body.code).toBe('WORKSPACE_HAS_NO_AGENT');
    expect((await agentStatus(t, theirs.id, token)).body.code).toBe('WORKSPACE_NOT_FOUND');

    // A conn token is not an admin token.
    const put = await t.call('PUT', `/workspaces/${randomUUID()}`, { token, body: { ownerId: owner, name: 'no' } });
    expect(put.status).toBe(403);
    expect(put.body.code).toBe('FORBIDDEN');
  });

  it('an admin token works on an admin route', async () => {
    const r = await run(['token', 'create', '--scope', 'admin']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^agadm_[A-Za-z0-9_-]{43}\n$/);
    const token = r.stdout.trim();
    const id = randomUUID();
    const put = await t.call('PUT', `/workspaces/${id}`, { token, body: { ownerId: randomUUID(), name: 'by-cli-admin' } });
    expect(put.status).toBe(201);
    const get = await t.call('GET', `/workspaces/${id}`, { token });
    expect(get.status).toBe(200);
    expect(get.body.name).toBe('by-cli-admin');
  });
});

/**
 * The environments of the processes above a command run through the gate, up to this test's
 * own process: what such a command can read of the agent and of whatever launched it.
 */
async function agentEnvirons(workspaceId: string): Promise<string[]> {
  const walk = `
    const fs = require('fs');
    const parent = (pid) => Number(/^PPid:\\s*(\\d+)/m.exec(fs.readFileSync('/proc/' + pid + '/status', 'utf8'))[1]);
    const environs = [];
    for (let pid = process.ppid; pid > 1 && pid !== ${process.pid}; pid = parent(pid)) {
      environs.push(fs.readFileSync('/proc/' + pid + '/environ', 'latin1'));
    }
    process.stdout.write(JSON.stringify(environs));`;
  const r = await t.call('POST', `/workspaces/${workspaceId}/conn/exec`, {
    token: ENV_ADMIN_TOKEN,
    body: { command: process.execPath, args: ['-e', walk] },
  });
  expect(r.status).toBe(200);
  expect(r.body.exitCode).toBe(0);
  const environs = JSON.parse(r.body.stdout as string) as string[];
  // They are read: PATH is there.
  for (const environ of environs) expect(environ).toContain('PATH=');
  return environs;
}

/** Node 22.15+ replaces the process in place; older Node leaves a launcher holding the variable. */
const reexecutesInPlace = typeof (process as { execve?: unknown }).execve === 'function';

describe('agent', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'agentgate-cli-agent-'));
  });
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('connects, serves proxied calls, and says goodbye on SIGTERM', async () => {
    const port = await freePort();
    const ws = await createWorkspace(t, [{ name: 'main', address: `http://127.0.0.1:${port}` }]);
    const agentToken = ws.agents[0]!.token;
    expect((await agentStatus(t, ws.id)).body.agent.status).toBe('connecting');

    let cli: CliProcess | undefined;
    try {
      cli = runCli(
        // The token through the environment (a command line is public).
        ['agent', '--gate', t.url, '--listen', `127.0.0.1:${port}`, '--root', tmp, '--heartbeat-ms', '200'],
        { LOG_LEVEL: 'info', AGENTGATE_AGENT_TOKEN: agentToken },
      );
      const [, url] = await cli.waitFor(/agent listening on (http:\/\/\S+)/, 10_000);
      expect(url).toBe(`http://127.0.0.1:${port}`);

      await eventually(async () => (await agentStatus(t, ws.id)).body.agent.status === 'connected', 5_000, 'the agent to connect');
      const connected = (await agentStatus(t, ws.id)).body.agent;
      expect(connected.firstConnectedAt).toEqual(expect.any(String));
      expect(connected.disconnectedAt).toBeNull();

      // The agent itself refuses unsigned calls; the gate's are signed.
      expect((await fetch(`${url}/health`)).status).toBe(200);
      const direct = await fetch(`${url}/exec`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"command":"node"}' });
      expect(direct.status).toBe(401);

      const proxied = await t.call('POST', `/workspaces/${ws.id}/conn/exec`, {
        token: ENV_ADMIN_TOKEN,
        body: { command: process.execPath, args: ['-e', 'console.log(42)'] },
      });
      expect(proxied.status).toBe(200);
      expect(proxied.headers.get('x-agentgate-upstream')).toBe('agent');
      expect(proxied.body).toMatchObject({ exitCode: 0, stdout: '42\n', timedOut: false });
      // A command it runs cannot read the token from the agent's environment, nor, where Node
      // can re-execute in place, from any process above it.
      const environs = await agentEnvirons(ws.id);
      if (reexecutesInPlace) {
        expect(environs).toHaveLength(1); // the agent itself, same pid as started
        expect(environs[0]).not.toContain(agentToken);
        expect(cli.stderr()).not.toMatch(/cannot re-execute in place/);
      } else {
        expect(environs).toHaveLength(2); // the agent and its launcher
        expect(environs[0]).not.toContain(agentToken);
        expect(cli.stderr()).toMatch(/cannot re-execute in place, so this launcher keeps AGENTGATE_AGENT_TOKEN.*use --token-file/);
      }

      cli.child.kill('SIGTERM');
      const exit = await cli.exited;
      expect(exit).toEqual({ code: 0, signal: null });
      expect(cli.stdout()).toMatch(/said goodbye to the gate/);

      // Right after exit, with no wait for the inactive timeout.
      const after = await agentStatus(t, ws.id);
      expect(after.body.agent.status).toBe('disconnected');
      expect(after.body.agent.disconnectedAt).toEqual(expect.any(String));
      const refused = await conn(t, ws.id);
      expect(refused.status).toBe(409);
      expect(refused.body.code).toBe('AGENT_DISCONNECTED');
    } finally {
      cli?.child.kill('SIGKILL');
    }
  });

  it('takes the token from a file only its owner may read, or from standard input', async () => {
    const port = await freePort();
    const ws = await createWorkspace(t, [{ name: 'main', address: `http://127.0.0.1:${port}` }]);
    const agentToken = ws.agents[0]!.token;
    const file = path.join(tmp, 'token');
    await writeFile(file, `${agentToken}\n`);
    const agentArgs = ['agent', '--gate', t.url, '--listen', `127.0.0.1:${port}`, '--root', tmp, '--heartbeat-ms', '200'];

    for (const mode of [0o644, 0o640, 0o604]) {
      await chmod(file, mode);
      const refused = await run([...agentArgs, '--token-file', file]);
      expect(refused.code).toBe(64);
      expect(refused.stderr).toMatch(/may be read by others.*chmod 600/);
    }

    await chmod(file, 0o600);
    for (const source of ['file', 'stdin'] as const) {
      let cli: CliProcess | undefined;
      try {
        cli = runCli([...agentArgs, '--token-file', source === 'file' ? file : '-'], { LOG_LEVEL: 'info' });
        if (source === 'stdin') cli.child.stdin.end(`${agentToken}\n`);
        await cli.waitFor(/agent listening on/, 10_000);
        await eventually(async () => (await agentStatus(t, ws.id)).body.agent.status === 'connected', 5_000, `the agent (${source}) to connect`);
        const environs = await agentEnvirons(ws.id);
        expect(environs).toHaveLength(1);
        expect(environs[0]).not.toContain(agentToken);
        cli.child.kill('SIGTERM');
        expect(await cli.exited).toEqual({ code: 0, signal: null });
      } finally {
        cli?.child.kill('SIGKILL');
      }
    }
  });

  it('keeps running while the gate is down and still exits 0 on SIGTERM', async () => {
    const deadGate = await freePort();
    let cli: CliProcess | undefined;
    try {
      cli = runCli(
        ['agent', '--gate', `http://127.0.0.1:${deadGate}`, '--token', 'agagt_nobody', '--listen', '127.0.0.1:0', '--root', tmp, '--heartbeat-ms', '100'],
        { LOG_LEVEL: 'info' },
      );
      const [, url] = await cli.waitFor(/agent listening on (http:\/\/\S+)/, 10_000);
      // Several failed heartbeats later it still serves.
      await cli.waitFor(/"failures":3/, 10_000);
      expect(cli.child.exitCode).toBeNull();
      expect((await fetch(`${url}/health`)).status).toBe(200);
      cli.child.kill('SIGTERM');
      expect(await cli.exited).toEqual({ code: 0, signal: null });
      expect(cli.stdout()).toMatch(/could not say goodbye to the gate/);
    } finally {
      cli?.child.kill('SIGKILL');
    }
  });
});

describe('HeartbeatLoop', () => {
  it('survives a gate that is down, resumes when it recovers, and says goodbye once', async () => {
    const port = await freePort();
    const gate = `http://127.0.0.1:${port}`;
    let mode: 'unavailable' | 'ok' = 'unavailable';
    const seen = { heartbeat: 0, disconnect: 0, other: 0, badAuth: 0 };
    const server = http.createServer((req, res) => {
      if (req.headers.authorization !== 'Bearer agagt_loop') seen.badAuth += 1;
      if (req.method === 'POST' && req.url === '/agent/heartbeat') seen.heartbeat += 1;
      else if (req.method === 'POST' && req.url === '/agent/disconnect') seen.disconnect += 1;
      else seen.other += 1;
      res.statusCode = mode === 'ok' ? 204 : 503;
      res.end();
    });
    const loop = new HeartbeatLoop({ gate, token: 'agagt_loop', intervalMs: 100, logger: pino({ level: 'silent' }), requestTimeoutMs: 1_000 });
    let stopped = false;
    try {
      // Nothing listens yet: connection refused, again and again.
      loop.start();
      await new Promise((r) => setTimeout(r, 300));
      expect(loop.sent).toBe(0);

      // Up but unavailable: 503s are not successes.
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      await eventually(() => seen.heartbeat >= 2, 3_000, 'heartbeats while the gate answers 503');
      expect(loop.sent).toBe(0);

      // Recovered: heartbeats count again, at the interval.
      mode = 'ok';
      await eventually(() => loop.sent >= 3, 3_000, 'heartbeats after the gate recovered');
      expect(seen.disconnect).toBe(0);

      stopped = true;
      await loop.stop(true);
      const heartbeatsAtStop = seen.heartbeat;
      expect(seen.disconnect).toBe(1);
      // Proves a negative: no heartbeat follows the goodbye, for longer than the interval.
      await new Promise((r) => setTimeout(r, 300));
      expect(seen.heartbeat).toBe(heartbeatsAtStop);
      expect(seen.disconnect).toBe(1);
      expect(seen.other).toBe(0);
      expect(seen.badAuth).toBe(0);
    } finally {
      if (!stopped) await loop.stop(false);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('stop(false) ends the loop without a goodbye', async () => {
    const seen = { heartbeat: 0, disconnect: 0 };
    const server = http.createServer((req, res) => {
      if (req.url === '/agent/heartbeat') seen.heartbeat += 1;
      if (req.url === '/agent/disconnect') seen.disconnect += 1;
      res.statusCode = 204;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const gate = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const loop = new HeartbeatLoop({ gate, token: 'agagt_loop', intervalMs: 50, logger: pino({ level: 'silent' }) });
    try {
      loop.start();
      await eventually(() => loop.sent >= 2, 3_000, 'two heartbeats');
      await loop.stop(false);
      const at = seen.heartbeat;
      // Proves a negative: no further heartbeat, for longer than the interval.
      await new Promise((r) => setTimeout(r, 200));
      expect(seen.heartbeat).toBe(at);
      expect(seen.disconnect).toBe(0);
    } finally {
      await loop.stop(false);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
