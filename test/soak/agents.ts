// The soak's agents. Fake agents are HTTP servers in the driver's process, heartbeated by the
// driver, that can be killed (sockets closed, port freed), frozen (requests held unanswered)
// and brought back on the same port. Real agents are `agentgate agent` processes, killed with
// SIGKILL, stopped with SIGTERM (they say goodbye), frozen with SIGSTOP.
import http from 'node:http';
import type net from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runCli, type CliProcess } from '../support/process.js';

/** Requests a frozen fake agent holds before it drops further ones: bounds its memory. */
const MAX_HELD = 500;

export class FakeAgent {
  readonly server: http.Server;
  port = 0;
  #frozen = false;
  #held: Array<() => void> = [];
  #timers = new Set<NodeJS.Timeout>();

  constructor() {
    this.server = http.createServer((req, res) => {
      if (!this.#frozen) return this.#serve(req, res);
      if (this.#held.length < MAX_HELD) this.#held.push(() => this.#serve(req, res));
      else req.socket.destroy();
    });
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  get address(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Listens on the given port (0: a free one); the same port when it comes back. */
  listen(port = this.port): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', onError);
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  /** Stops listening and drops every connection, as a dead process would. */
  down(): Promise<void> {
    this.#frozen = false;
    this.#held = [];
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  freeze(): void {
    this.#frozen = true;
  }

  /** Answers what it held, late, as a resumed process would. */
  thaw(): void {
    this.#frozen = false;
    for (const serve of this.#held.splice(0)) serve();
  }

  #later(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  #serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.destroyed || res.destroyed) return;
    const url = new URL(req.url ?? '/', 'http://agent');
    const json = (status: number, body: unknown) => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    switch (url.pathname) {
      case '/health':
        return json(200, { status: 'ok' });
      case '/tool/read':
        return json(200, { ok: true, items: [1, 2, 3], q: url.searchParams.get('q') });
      case '/tool/run': {
        let bytes = 0;
        req.on('data', (c: Buffer) => (bytes += c.length));
        req.on('end', () => json(200, { ok: true, bytes }));
        return;
      }
      case '/tool/slow':
        return this.#later(50 + Math.floor(Math.random() * 300), () => json(200, { ok: true, slow: true }));
      case '/tool/fail':
        return json(500, { error: 'the tool failed' });
      case '/tool/stuck':
        // Never answers: the gate's headers timeout must end the call.
        req.resume();
        return;
      default:
        return json(404, { error: 'no such tool' });
    }
  }
}

export interface RealAgentOptions {
  cliArgs: { gate: string; heartbeatMs: number };
  token: string;
  port: number;
  root: string;
}

export class RealAgent {
  #cli: CliProcess | undefined;
  constructor(readonly options: RealAgentOptions) {}

  get address(): string {
    return `http://127.0.0.1:${this.options.port}`;
  }

  get pid(): number | undefined {
    return this.#cli?.child.pid;
  }

  static async makeRoot(): Promise<string> {
    const root = await mkdtemp(path.join(os.tmpdir(), 'agentgate-soak-agent-'));
    await writeFile(path.join(root, 'hello.txt'), 'hello from the soak run\n');
    return root;
  }

  static removeRoot(root: string): Promise<void> {
    return rm(root, { recursive: true, force: true });
  }

  async start(): Promise<void> {
    const { gate, heartbeatMs } = this.options.cliArgs;
    const cli = runCli(
      // The token on standard input: the process signalled below is then the agent itself, not a
      // supervisor re-executing it without AGENTGATE_AGENT_TOKEN.
      ['agent', '--gate', gate, '--listen', `127.0.0.1:${this.options.port}`, '--root', this.options.root, '--heartbeat-ms', String(heartbeatMs), '--token-file', '-'],
      { LOG_LEVEL: 'error' },
    );
    cli.child.stdin.end(`${this.options.token}\n`);
    this.#cli = cli;
    try {
      await cli.waitFor(/agent listening on/, 20_000);
    } catch (error) {
      cli.child.kill('SIGKILL');
      throw error;
    }
  }

  /** Killed without a goodbye. */
  async kill(): Promise<void> {
    await this.#signal('SIGKILL');
  }

  /** SIGTERM: the agent says goodbye and exits (SIGKILL if it takes more than 10 s). */
  async stop(): Promise<void> {
    const cli = this.#cli;
    if (!cli || cli.child.exitCode !== null || cli.child.signalCode !== null) return;
    cli.child.kill('SIGCONT');
    cli.child.kill('SIGTERM');
    const timer = setTimeout(() => cli.child.kill('SIGKILL'), 10_000);
    await cli.exited;
    clearTimeout(timer);
  }

  freeze(): void {
    this.#cli?.child.kill('SIGSTOP');
  }

  thaw(): void {
    this.#cli?.child.kill('SIGCONT');
  }

  /** Synchronous last resort, for process exit. */
  killNow(): void {
    this.#cli?.child.kill('SIGKILL');
  }

  async #signal(signal: NodeJS.Signals): Promise<void> {
    const cli = this.#cli;
    if (!cli || cli.child.exitCode !== null || cli.child.signalCode !== null) return;
    cli.child.kill(signal);
    await cli.exited;
  }
}
