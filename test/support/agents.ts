// Fake agents on real sockets (port 0): a healthy HTTP agent (optionally slow or failing its
// health check), a black hole that accepts and never answers, and a closed port. Each records
// what reached it so tests can assert that nothing did, or that sockets were closed.
import http from 'node:http';
import net from 'node:net';
import { afterAll } from 'vitest';
import { freePort } from '../../src/db/embedded.js';

export interface SocketLog {
  opened: number;
  closed: number;
  /** Resolves when `closed` reaches `n`. */
  waitClosed(n: number, timeoutMs?: number): Promise<void>;
}

function socketLog(): SocketLog & { track(socket: net.Socket): void } {
  const log = {
    opened: 0,
    closed: 0,
    waiters: [] as Array<{ n: number; resolve: () => void }>,
    track(socket: net.Socket) {
      log.opened += 1;
      socket.once('close', () => {
        log.closed += 1;
        for (const w of log.waiters.filter((x) => log.closed >= x.n)) w.resolve();
        log.waiters = log.waiters.filter((x) => log.closed < x.n);
      });
    },
    waitClosed(n: number, timeoutMs = 2_000) {
      if (log.closed >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${log.closed} of ${n} sockets closed`)), timeoutMs);
        log.waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
  return log;
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface FakeAgent {
  address: string;
  port: number;
  requests: RecordedRequest[];
  healthChecks(): number;
  sockets: SocketLog;
  /** Change the health behaviour at run time. */
  setHealth(health: HealthBehaviour): void;
  /** Extra routes for proxy tests; return true when handled. */
  handle?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  close(): Promise<void>;
}

export interface HealthBehaviour {
  status?: number;
  delayMs?: number;
  /** Accept the request and never answer it. */
  hang?: boolean;
}

export async function startAgent(health: HealthBehaviour = {}): Promise<FakeAgent> {
  let behaviour = health;
  const requests: RecordedRequest[] = [];
  const sockets = socketLog();
  const agent: FakeAgent = {
    address: '',
    port: 0,
    requests,
    sockets,
    healthChecks: () => requests.filter((r) => r.url === '/health' || r.url.endsWith('/health')).length,
    setHealth: (next) => {
      behaviour = next;
    },
    close: async () => undefined,
  };
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (agent.handle?.(req, res)) return;
    if (req.url?.endsWith('/health')) {
      if (behaviour.hang) return;
      const answer = () => {
        res.writeHead(behaviour.status ?? 200, { 'content-type': 'application/json' });
        res.end('{"status":"ok"}');
      };
      if (behaviour.delayMs) setTimeout(answer, behaviour.delayMs);
      else answer();
      return;
    }
    res.writeHead(404).end();
  });
  server.on('connection', (socket) => sockets.track(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  agent.port = port;
  agent.address = `http://127.0.0.1:${port}`;
  agent.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return agent;
}

export interface BlackHole {
  address: string;
  sockets: SocketLog;
  close(): Promise<void>;
}

/** Accepts connections and never answers: a hung agent. */
export async function startBlackHole(): Promise<BlackHole> {
  const sockets = socketLog();
  const open = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.track(socket);
    open.add(socket);
    // Read and discard what arrives: a socket never read never sees its peer's FIN, so the
    // close of a dial would go unnoticed.
    socket.resume();
    socket.on('error', () => undefined);
    socket.on('close', () => open.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `http://127.0.0.1:${port}`,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface AgentFixtures {
  agent: (health?: HealthBehaviour) => Promise<FakeAgent>;
  blackHole: () => Promise<BlackHole>;
}

/**
 * Starts fake agents for the tests of one file and closes every one of them after the file
 * (call it at the top level of the file).
 */
export function agentFixtures(): AgentFixtures {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    await Promise.all(closers.splice(0).map((close) => close()));
  });
  return {
    agent: async (health = {}) => {
      const a = await startAgent(health);
      closers.push(() => a.close());
      return a;
    },
    blackHole: async () => {
      const hole = await startBlackHole();
      closers.push(() => hole.close());
      return hole;
    },
  };
}

/** An address where nothing listens: connections are refused. */
export async function closedPortAddress(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

export interface FreezableAgent {
  address: string;
  /** Stops the agent's process (SIGSTOP) and fills its accept queue: new connections hang. */
  freeze(): Promise<void>;
  /** Lets it run again (SIGCONT). */
  thaw(): void;
  close(): Promise<void>;
}

// A healthy agent in a process of its own, so that it can be frozen like a VM that stopped.
// It closes idle sockets after 200 ms, as agents with a short keep-alive do: the gate's next
// call then needs a new socket.
const FREEZABLE_AGENT = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); });
});
server.keepAliveTimeout = 200;
server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => process.stdout.write(String(server.address().port) + '\\n'));
`;

/** An agent whose process can be frozen: connecting to it then hangs (no SYN-ACK), as to a frozen VM. */
export async function startFreezableAgent(): Promise<FreezableAgent> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['-e', FREEZABLE_AGENT], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
  });
  const fillers: net.Socket[] = [];
  const thaw = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGCONT');
    for (const s of fillers.splice(0)) s.destroy();
  };
  return {
    address: `http://127.0.0.1:${port}`,
    freeze: async () => {
      child.kill('SIGSTOP');
      // The kernel completes a few handshakes into the stopped process's accept queue; once it
      // is full, further connection attempts get no answer at all.
      for (let i = 0; i < 4; i += 1) {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => undefined);
        fillers.push(s);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      const probe = net.connect(port, '127.0.0.1');
      probe.on('error', () => undefined);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const hangs = probe.connecting;
      probe.destroy();
      if (!hangs) throw new Error('the frozen agent still accepts connections: its accept queue did not fill');
    },
    thaw,
    close: async () => {
      thaw();
      child.kill('SIGKILL');
      if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}
