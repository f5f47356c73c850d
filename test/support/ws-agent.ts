// A WebSocket agent on a real socket (the `ws` package): answers GET /health, echoes every
// message with its type, and records every TCP connection and upgrade request that reaches it.
import http from 'node:http';
import type net from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

export interface AgentSide {
  socket: WebSocket;
  req: http.IncomingMessage;
  received: Array<{ data: Buffer; isBinary: boolean }>;
  closed: Promise<{ code: number; at: number }>;
}

export interface WsAgent {
  address: string;
  tcpOpened(): number;
  upgrades: Array<{ url: string; headers: http.IncomingHttpHeaders }>;
  open(): number;
  /** Resolves with the next WebSocket the agent accepts. */
  nextConnection(): Promise<AgentSide>;
  /** Resolves when the gate gives up the upgrade it is holding (`?delay=<ms>`) before it answered. */
  delayed(): Promise<void>;
  close(): Promise<void>;
}

export async function startWsAgent(): Promise<WsAgent> {
  let tcp = 0;
  const upgrades: WsAgent['upgrades'] = [];
  const waiters: Array<(side: AgentSide) => void> = [];
  const delayWaiters: Array<() => void> = [];
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url?.endsWith('/health')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    res.writeHead(404).end();
  });
  server.on('connection', (socket: net.Socket) => {
    tcp += 1;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const wss = new WebSocketServer({ noServer: true });
  // A cookie on the 101, which must not reach the caller.
  wss.on('headers', (headers: string[]) => headers.push('Set-Cookie: agent=1'));
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    upgrades.push({ url: req.url ?? '', headers: req.headers });
    if (req.url?.includes('/declined')) {
      // The agent refuses this upgrade with an answer of its own.
      const body = JSON.stringify({ error: 'no terminal here' });
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
          `x-agent-said: no\r\nx-agentgate-degraded: spoofed\r\n\r\n${body}`,
      );
      return;
    }
    // `?delay=<ms>`: an agent slow to answer the upgrade.
    const delay = Number(/[?&]delay=(\d+)/.exec(req.url ?? '')?.[1] ?? 0);
    if (delay > 0) {
      const timer = setTimeout(() => accept(req, socket, head), delay);
      // Reading, so that the gate giving up the upgrade is seen (a paused socket sees no end).
      socket.resume();
      // The gate's end of the socket closing (its end, or a reset) means it gave the upgrade up.
      const givenUp = () => {
        clearTimeout(timer);
        for (const waiter of delayWaiters.splice(0)) waiter();
      };
      socket.once('end', givenUp);
      socket.once('close', givenUp);
      return;
    }
    accept(req, socket, head);
  });
  const accept = (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (socket.destroyed) return;
    wss.handleUpgrade(req, socket, head, (ws) => {
      const received: AgentSide['received'] = [];
      const closed = new Promise<{ code: number; at: number }>((resolve) => ws.once('close', (code) => resolve({ code, at: Date.now() })));
      ws.on('error', () => undefined);
      ws.on('message', (data: RawData, isBinary: boolean) => {
        const buffer = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
        received.push({ data: buffer, isBinary });
        ws.send(buffer, { binary: isBinary });
      });
      waiters.shift()?.({ socket: ws, req, received, closed });
    });
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `http://127.0.0.1:${port}`,
    tcpOpened: () => tcp,
    upgrades,
    open: () => wss.clients.size,
    nextConnection: () => new Promise((resolve) => waiters.push(resolve)),
    delayed: () => new Promise((resolve) => delayWaiters.push(resolve)),
    close: async () => {
      for (const client of wss.clients) client.terminate();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
