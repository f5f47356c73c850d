#!/usr/bin/env node
// The `agentgate` command: serve (default), migrate, token create, agent.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open, rm, rmdir } from 'node:fs/promises';
import { constants as osConstants, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import closeWithGrace from 'close-with-grace';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';
import { openDatabaseRuntime } from './runtime.js';
import { migrateDown, migrateUp, migrationStatus, pendingMigrations, withMigrationDatabase } from './db/migrate.js';
import { createApiToken } from './db/tokens-repo.js';
import { parseListen, startAgent } from './agent/run-agent.js';

const USAGE: Record<string, string> = {
  main: `usage: agentgate <command> [options]

commands:
  serve                      run the service (default)
  migrate up|down|status     apply, revert the last, or list migrations
  token create               create an API token (shown once)
  agent                      run the reference workspace agent

Run "agentgate <command> --help" for a command's options. Configuration comes from the
environment (see README.md): DATABASE_URL, or an embedded PostgreSQL in AGENTGATE_DATA_DIR.`,
  serve: `usage: agentgate serve

Runs the service: applies migrations, listens on HOST:PORT, drains on SIGTERM/SIGINT.
Configuration comes from the environment (see README.md).`,
  migrate: `usage: agentgate migrate up|down|status

  up       apply every pending migration
  down     revert the last applied migration
  status   list migrations, applied or pending`,
  token: `usage: agentgate token create --scope conn|admin [--owner <uuid>] [--name <name>]

Creates an API token and prints it once on stdout (only its SHA-256 is stored).
  --scope conn|admin   conn: chat-server routes; admin: every route
  --owner <uuid>       confine a conn token to one owner's workspaces
  --name <name>        a label (default: "cli")`,
  agent: `usage: agentgate agent --gate <url> (--token-file <path>|-) --listen <host:port> [--root <dir>] [--heartbeat-ms <ms>]

Runs the reference workspace agent: heartbeats to the gate, serves GET /health and tool
endpoints (POST /exec, POST /exec/stream, GET/PUT /files, and MCP at POST /mcp) that accept
only requests signed by the gate, and says goodbye on SIGTERM/SIGINT.
  --gate <url>          agentgate's base URL
  --token-file <path>   a file holding this agent's token (from POST /workspaces/:id/builds);
                        refused unless only its owner may read it (chmod 600). "-" reads the
                        token from standard input
  --token <token>       the token itself: visible to every local user, avoid it
                        AGENTGATE_AGENT_TOKEN may hold the token instead; the agent then
                        re-executes itself without it, so that commands it runs cannot read it
                        in its environment (Node >= 22.15; on older Node its launcher keeps it)
  --listen <host:port>  where to serve (port 0 picks a free one)
  --root <dir>          the directory tools are confined to (default: the current directory)
  --heartbeat-ms <ms>   heartbeat interval (default 15000)`,
};

class UsageError extends Error {
  constructor(
    message: string,
    readonly command: string,
  ) {
    super(message);
  }
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(command: string, args: string[], options: T) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message, command);
  }
}

async function serve(args: string[]): Promise<number> {
  const { values, positionals } = parse('serve', args, {});
  if (values.help) return help('serve');
  if (positionals.length > 0) throw new UsageError(`serve takes no arguments (got ${positionals.join(' ')})`, 'serve');
  const config = loadConfig(process.env);
  // Parsed once: secrets need not stay in the environment that child processes (the embedded
  // PostgreSQL among them) inherit.
  for (const secret of ['AGENTGATE_ADMIN_TOKEN', 'DATABASE_URL']) delete process.env[secret];
  const logger = createLogger(config.logLevel);
  // Signals are handled from the start: one arriving during start-up (initdb, migrations) waits
  // for it to finish and then shuts down in order, rather than orphaning the embedded database.
  // Our own drain is bounded by the shutdown grace; the delay here is the last resort above it.
  const starting = startServer(config, logger);
  closeWithGrace({ delay: config.shutdownGraceMs + 60_000, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'fatal error; shutting down');
    else logger.info({ signal }, 'shutting down');
    // After an uncaught error, start-up may never settle (the step that threw was what it was
    // waiting for): give it a moment to finish, then exit rather than wait for a second signal.
    const server = await (err ? settledWithin(starting, FATAL_START_WAIT_MS) : starting.catch(() => undefined));
    await server?.close();
  });
  const server = await starting;
  out(`agentgate listening on ${server.url}`);
  if (server.generatedAdminToken) out(`admin token (shown once, keep it): ${server.generatedAdminToken}`);
  return -1; // keeps running
}

const FATAL_START_WAIT_MS = 1_000;

/** The value of `promise` if it fulfils within `ms`; undefined if it rejects or takes longer. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function withDatabase<T>(config: Config, fn: (runtime: Awaited<ReturnType<typeof openDatabaseRuntime>>) => Promise<T>): Promise<T> {
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  // A running `serve` may hold the embedded database: short commands use its server.
  const runtime = await openDatabaseRuntime(config, logger, { attachIfRunning: true });
  try {
    return await fn(runtime);
  } finally {
    await runtime.close();
  }
}

async function migrate(args: string[]): Promise<number> {
  const { values, positionals } = parse('migrate', args, {});
  if (values.help) return help('migrate');
  const action = positionals[0];
  if ((action !== 'up' && action !== 'down' && action !== 'status') || positionals.length > 1) {
    throw new UsageError('migrate needs exactly one of: up, down, status', 'migrate');
  }
  const config = loadConfig(process.env);
  await withDatabase(config, ({ handle }) => withMigrationDatabase(handle.url, async (db) => {
    if (action === 'status') {
      for (const m of await migrationStatus(db)) {
        out(`${m.executedAt ? 'applied' : 'pending'}  ${m.name}${m.executedAt ? `  ${m.executedAt.toISOString()}` : ''}`);
      }
      return;
    }
    const names = action === 'up' ? await migrateUp(db) : await migrateDown(db);
    out(names.length === 0 ? 'nothing to do' : names.map((n) => `${action === 'up' ? 'applied' : 'reverted'} ${n}`).join('\n'));
  }));
  return 0;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function token(args: string[]): Promise<number> {
  const { values, positionals } = parse('token', args, {
    scope: { type: 'string' },
    owner: { type: 'string' },
    name: { type: 'string' },
  });
  if (values.help) return help('token');
  if (positionals[0] !== 'create' || positionals.length > 1) throw new UsageError('token needs the subcommand: create', 'token');
  const scope = values.scope;
  if (scope !== 'conn' && scope !== 'admin') throw new UsageError('--scope must be conn or admin', 'token');
  if (values.owner !== undefined && !UUID.test(values.owner)) throw new UsageError('--owner must be a UUID', 'token');
  if (values.owner !== undefined && scope !== 'conn') throw new UsageError('--owner is only allowed with --scope conn', 'token');
  const name = values.name ?? 'cli';
  if (name.length === 0 || name.length > 200) throw new UsageError('--name must be 1 to 200 characters', 'token');
  const config = loadConfig(process.env);
  const created = await withDatabase(config, async ({ handle: { db } }) => {
    const pending = await pendingMigrations(db);
    if (pending.length > 0) {
      throw new Error(`the database is not migrated (pending: ${pending.join(', ')}); run "agentgate migrate up" or start "agentgate serve" first`);
    }
    return createApiToken(db, { name, scope, ownerId: values.owner ?? null });
  });
  process.stderr.write(`created ${scope} token ${created.id}${values.owner ? ` for owner ${values.owner}` : ''}; it is shown once:\n`);
  out(created.token);
  return 0;
}

async function agent(args: string[]): Promise<number> {
  // First of all, so that no exit before it leaves the token on disk.
  const handoff = process.env[TOKEN_HANDOFF_VARIABLE];
  delete process.env[TOKEN_HANDOFF_VARIABLE];
  const handedOff = handoff === undefined ? undefined : await takeHandedOffToken(handoff);
  const { values, positionals } = parse('agent', args, {
    gate: { type: 'string' },
    token: { type: 'string' },
    'token-file': { type: 'string' },
    listen: { type: 'string' },
    root: { type: 'string' },
    'heartbeat-ms': { type: 'string' },
  });
  if (values.help) return help('agent');
  if (positionals.length > 0) throw new UsageError(`agent takes no arguments (got ${positionals.join(' ')})`, 'agent');
  const envToken = process.env[AGENT_TOKEN_VARIABLE];
  delete process.env[AGENT_TOKEN_VARIABLE];
  for (const flag of ['gate', 'listen'] as const) {
    if (!values[flag]) throw new UsageError(`--${flag} is required`, 'agent');
  }
  if (values.token !== undefined && values['token-file'] !== undefined) throw new UsageError('give --token or --token-file, not both', 'agent');
  if (handedOff !== undefined && (values.token !== undefined || values['token-file'] !== undefined)) {
    throw new UsageError(`${TOKEN_HANDOFF_VARIABLE} is set by the agent for itself, not beside --token or --token-file`, 'agent');
  }
  const named = values.token !== undefined || values['token-file'] !== undefined || handedOff !== undefined;
  if (!named && !envToken) throw new UsageError(`--token-file, --token or ${AGENT_TOKEN_VARIABLE} is required`, 'agent');
  let gate: URL;
  try {
    gate = new URL(values.gate ?? '');
  } catch {
    throw new UsageError('--gate must be an http: or https: URL', 'agent');
  }
  if (gate.protocol !== 'http:' && gate.protocol !== 'https:') throw new UsageError('--gate must be an http: or https: URL', 'agent');
  let listen: { host: string; port: number };
  try {
    listen = parseListen(values.listen ?? '');
  } catch (error) {
    throw new UsageError((error as Error).message, 'agent');
  }
  const heartbeatMs = values['heartbeat-ms'] === undefined ? 15_000 : Number(values['heartbeat-ms']);
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 10 || heartbeatMs > 3_600_000) {
    throw new UsageError('--heartbeat-ms must be an integer from 10 to 3600000', 'agent');
  }
  // Deleting the variable does not take it out of /proc/<pid>/environ, which a command run
  // through /exec can read: the agent starts again without it.
  if (envToken !== undefined) return restartWithoutToken(args, named ? undefined : envToken);
  const agentToken =
    handedOff !== undefined ? handedOff
    : values['token-file'] !== undefined ? await readTokenFile(values['token-file'])
    : (values.token ?? '');
  const logger = createLogger(process.env.LOG_LEVEL ?? 'info').child({ component: 'agent' });
  const running = await startAgent({
    gate: gate.toString(),
    token: agentToken,
    host: listen.host,
    port: listen.port,
    root: values.root ?? process.cwd(),
    heartbeatMs,
    logger,
  });
  closeWithGrace({ delay: 10_000, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'fatal error; shutting down');
    else logger.info({ signal }, 'shutting down');
    await running.close(true);
  });
  // Started by superviseAgent: a supervisor that dies (even by SIGKILL) takes the agent along.
  if (process.send !== undefined) {
    process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
    process.channel?.unref();
  }
  out(`agent listening on ${running.url}`);
  return -1;
}

const AGENT_TOKEN_VARIABLE = 'AGENTGATE_AGENT_TOKEN';
/** Where a process that re-executed itself left the token for its new image (then removed). */
const TOKEN_HANDOFF_VARIABLE = 'AGENTGATE_AGENT_TOKEN_HANDOFF';

/** `process.execve`, from Node 22.15 and 23.11 on; Node 20's types do not have it. */
type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;
const execve = (process as { execve?: Execve }).execve;

/**
 * Starts the agent again without AGENTGATE_AGENT_TOKEN in its environment. Where Node can, the
 * process replaces itself (same pid, nothing left behind) and hands the token over in a file
 * only it may read, removed before the agent listens. Older Node runs the agent as a child:
 * the launcher keeps the variable, so it says so.
 */
function restartWithoutToken(args: string[], token: string | undefined): Promise<number> {
  const script = process.argv[1] ?? '';
  if (execve === undefined) {
    process.stderr.write(
      `agentgate: Node ${process.version} cannot re-execute in place, so this launcher keeps ${AGENT_TOKEN_VARIABLE} ` +
        'in its environment, where commands run through the agent can read it: use --token-file, or Node >= 22.15\n',
    );
    return superviseAgent(token === undefined ? args : [...args, '--token-file', '-'], token);
  }
  const env = { ...process.env };
  let dir: string | undefined;
  if (token !== undefined) {
    dir = mkdtempSync(path.join(tmpdir(), 'agentgate-token-'));
    const file = path.join(dir, 'token');
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
    env[TOKEN_HANDOFF_VARIABLE] = file;
  }
  try {
    return execve(process.execPath, [process.execPath, ...process.execArgv, script, 'agent', ...args], env);
  } catch (error) {
    // Not replaced: the token must not stay behind.
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Reads the token left by restartWithoutToken and removes it and its private directory. */
async function takeHandedOffToken(file: string): Promise<string> {
  const dir = path.dirname(file);
  if (path.basename(file) !== 'token' || !path.basename(dir).startsWith('agentgate-token-')) {
    throw new UsageError(`${TOKEN_HANDOFF_VARIABLE} is set by the agent for itself, not by hand`, 'agent');
  }
  try {
    return await readTokenFile(file);
  } finally {
    await rm(file, { force: true });
    await rmdir(dir).catch(() => undefined);
  }
}

/** The token in a file only its owner may read, or on standard input (`-`). */
async function readTokenFile(file: string): Promise<string> {
  let text: string;
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    text = Buffer.concat(chunks).toString('utf8');
  } else {
    let handle;
    try {
      handle = await open(file, 'r');
    } catch (error) {
      throw new UsageError(`--token-file ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`, 'agent');
    }
    try {
      // Checked on the opened file, so a swap after the check cannot pass another one.
      const info = await handle.stat();
      if (!info.isFile()) throw new UsageError(`--token-file ${file} is not a regular file`, 'agent');
      if ((info.mode & 0o077) !== 0) {
        throw new UsageError(`--token-file ${file} may be read by others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`, 'agent');
      }
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  }
  const token = text.trim();
  if (token === '' || /\s/.test(token)) throw new UsageError(`--token-file ${file} must hold exactly one token`, 'agent');
  return token;
}

/**
 * Runs the agent as a child process whose environment lacks the token (given on its standard
 * input when `token` is set), forwards signals to it, and exits as it does.
 */
function superviseAgent(args: string[], token: string | undefined): Promise<number> {
  const script = process.argv[1] ?? '';
  const child = spawn(process.execPath, [...process.execArgv, script, 'agent', ...args], {
    env: process.env,
    // Its own process group: a terminal's Ctrl-C reaches it once, through us.
    detached: true,
    stdio: [token === undefined ? 'inherit' : 'pipe', 'inherit', 'inherit', 'ipc'],
  });
  if (token !== undefined) child.stdin?.end(`${token}\n`);
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of signals) process.on(signal, forward);
  return new Promise((resolve) => {
    child.once('error', (error) => {
      process.stderr.write(`agentgate: the agent could not be started: ${error.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      resolve(code ?? 128 + (signal ? osConstants.signals[signal] : 0));
    });
  });
}

function help(command: string): number {
  out(USAGE[command] ?? USAGE.main ?? '');
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first.startsWith('-')) {
    if (first === '--help' || first === '-h') return help('main');
    return serve(argv);
  }
  switch (first) {
    case 'serve':
      return serve(rest);
    case 'migrate':
      return migrate(rest);
    case 'token':
      return token(rest);
    case 'agent':
      return agent(rest);
    case 'help':
      return help(rest[0] ?? 'main');
    default:
      throw new UsageError(`unknown command "${first}"`, 'main');
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`agentgate: ${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    if (error instanceof UsageError) {
      const see = error.command === 'main' ? 'agentgate --help' : `agentgate ${error.command} --help`;
      process.stderr.write(`agentgate: ${error.message} (see "${see}")\n`);
      process.exit(64); // EX_USAGE
    }
    const cause = (error as Error).cause;
    process.stderr.write(`agentgate: ${(error as Error).message}${cause instanceof Error ? `: ${cause.message}` : ''}\n`);
    process.exit(1);
  },
);
