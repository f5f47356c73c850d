// Runs one command for the reference agent: no shell, its own process group (so a timeout or
// an abort kills the whole tree), output capped, duration measured.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export interface RunOptions {
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  stdin?: string | undefined;
  timeoutMs: number;
  /** Bytes kept of stdout and of stderr each; the rest is counted and dropped. */
  maxOutputBytes: number;
  signal: AbortSignal;
  /**
   * Called with output as it comes (streaming endpoint). A promise returned pauses that stream
   * until it settles: the reader's backpressure reaches the process.
   */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => Promise<void> | undefined;
}

/** Process groups of commands still running, so that shutdown can end them. */
const running = new Set<number>();

/** Kills every command still running (the agent is shutting down). */
export function killAllProcesses(): void {
  for (const pid of running) killTree(pid);
}

// How long output may still arrive after the command itself ended. A process that escaped the
// group (setsid) and still holds the pipes must not hold the answer.
const OUTPUT_DRAIN_MS = 200;

export interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  truncated: boolean;
  timedOut: boolean;
  aborted: boolean;
  durationMs: number;
  /** Set when the command could not be started (e.g. not found). */
  spawnError?: string;
}

/** Kills the whole process group; the child was started detached, as its leader. */
function killTree(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export function runProcess(options: RunOptions): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(options.command, options.args, {
        cwd: options.cwd,
        env: options.env,
        shell: false,
        detached: true,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    } catch (error) {
      // Arguments spawn refuses outright (a NUL byte in the command, an argument or env).
      resolve({
        exitCode: null,
        signal: null,
        stdout: '',
        stderr: '',
        truncated: false,
        timedOut: false,
        aborted: false,
        durationMs: Math.round(performance.now() - started),
        spawnError: (error as Error).message,
      });
      return;
    }
    const out = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
    const kept = { stdout: 0, stderr: 0 };
    let truncated = false;
    let timedOut = false;
    let aborted = false;
    let spawnError: string | undefined;
    const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      const wait = options.onOutput?.(stream, chunk);
      if (wait) {
        child[stream].pause();
        void wait.finally(() => child[stream].resume());
      }
      const room = options.maxOutputBytes - kept[stream];
      if (room <= 0) {
        truncated = true;
        return;
      }
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      if (part.length < chunk.length) truncated = true;
      out[stream].push(part);
      kept[stream] += part.length;
    };
    child.stdout.on('data', collect('stdout'));
    child.stderr.on('data', collect('stderr'));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');

    const pid = child.pid;
    if (pid !== undefined) running.add(pid);
    let drain: NodeJS.Timeout | undefined;
    const stopReading = () => {
      clearTimeout(drain);
      drain = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, OUTPUT_DRAIN_MS);
      drain.unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(pid);
      stopReading();
    }, options.timeoutMs);
    const onAbort = () => {
      aborted = true;
      killTree(pid);
      stopReading();
    };
    if (options.signal.aborted) onAbort();
    else options.signal.addEventListener('abort', onAbort, { once: true });

    child.once('error', (error) => {
      spawnError = error.message;
    });
    child.once('exit', stopReading);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(drain);
      options.signal.removeEventListener('abort', onAbort);
      if (pid !== undefined) running.delete(pid);
      // Grandchildren may outlive the leader; the group goes with it.
      if (timedOut || aborted) killTree(pid);
      resolve({
        exitCode: code,
        signal,
        stdout: Buffer.concat(out.stdout).toString('utf8'),
        stderr: Buffer.concat(out.stderr).toString('utf8'),
        truncated,
        timedOut,
        aborted,
        durationMs: Math.round(performance.now() - started),
        ...(spawnError === undefined ? {} : { spawnError }),
      });
    });
  });
}
