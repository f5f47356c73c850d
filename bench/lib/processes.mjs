// Processes of the bench: each server in its own process, pinned to the server core when pinning
// is on, its output kept out of the terminal, and every one stopped at the end.
import { spawn, execFileSync } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';

/** `taskset` on PATH and at least two cores: the server side on core 0, the load on core 1. */
export function pinningAvailable() {
  if (os.cpus().length < 2) return false;
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Pins every thread of this process (the load generator) to `cpu`. */
export function pinSelf(cpu) {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
}

export function onPath(command) {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export class Processes {
  /** @param {{ pin: boolean, logDir: string }} options */
  constructor(options) {
    this.pin = options.pin;
    this.logDir = options.logDir;
    this.children = new Set();
    // Should this process die without its cleanup (an uncaught error), its servers go with it.
    process.once('exit', () => {
      for (const { child } of this.children) child.kill('SIGKILL');
    });
  }

  /**
   * Starts `command args` (on the server core when pinning), stdout to /dev/null unless `waitFor`
   * needs it, stderr to `<logDir>/<name>.err`; resolves once `waitFor` matches stdout (then
   * stdout is drained to nowhere) or at once.
   */
  async start(name, command, args, { env = {}, waitFor, cpu = 0 } = {}) {
    const errPath = `${this.logDir}/${name}.err`;
    const errFd = openSync(errPath, 'w');
    const argv = this.pin ? ['taskset', '-c', String(cpu), command, ...args] : [command, ...args];
    const child = spawn(argv[0], argv.slice(1), {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['ignore', waitFor ? 'pipe' : 'ignore', errFd],
    });
    closeSync(errFd);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const proc = { name, child, exited, errPath, stopped: false };
    this.children.add(proc);
    const failure = exited.then(({ code, signal }) => {
      throw new Error(`${name} exited (${code ?? signal}) while starting: ${readFileSync(errPath, 'utf8').slice(-2000)}`);
    });
    failure.catch(() => undefined);
    if (!waitFor) return { ...proc, match: undefined };
    const match = await Promise.race([
      failure,
      new Promise((resolve) => {
        let out = '';
        const onData = (chunk) => {
          out += chunk;
          const m = out.match(waitFor);
          if (m) {
            child.stdout.off('data', onData);
            child.stdout.resume();
            resolve(m);
          }
        };
        child.stdout.on('data', onData);
      }),
    ]);
    return { ...proc, match };
  }

  /** Runs `command args` to its end (on core `cpu` when pinning); its stdout. */
  async run(name, command, args, { cpu = 1 } = {}) {
    const argv = this.pin ? ['taskset', '-c', String(cpu), command, ...args] : [command, ...args];
    const child = spawn(argv[0], argv.slice(1), { env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = { name, child, exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))), stopped: false };
    this.children.add(proc);
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const { code, signal } = await proc.exited;
    this.children.delete(proc);
    if (code !== 0) throw new Error(`${name} exited (${code ?? signal}): ${err.slice(-2000)}`);
    return out;
  }

  /** Waits until GET `url` answers 200 (the process must stay up meanwhile). */
  async ready(proc, url, timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void proc.exited.then(() => (exited = true));
    for (;;) {
      if (exited) throw new Error(`${proc.name} exited while starting: ${readFileSync(proc.errPath, 'utf8').slice(-2000)}`);
      try {
        const res = await fetch(url);
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`${proc.name} not ready within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(proc, signal = 'SIGTERM') {
    if (proc.stopped) return;
    proc.stopped = true;
    this.children.delete(proc);
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill(signal);
      const timer = setTimeout(() => proc.child.kill('SIGKILL'), 5_000);
      await proc.exited;
      clearTimeout(timer);
    }
  }

  async stopAll() {
    await Promise.all([...this.children].map((p) => this.stop(p)));
  }
}
