// Fake agents on real sockets (port 0): a healthy HTTP agent (optionally slow or failing its
// health check), a black hole that accepts and never answers, and a closed port. Each records
// what reached it so tests can assert that nothing did, or that sockets were closed.
import http from 'node:http';
import net from 'node:net';
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

/** An address where nothing listens: connections are refused. */
export async function closedPortAddress(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}
