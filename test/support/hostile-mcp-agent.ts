// A scripted MCP agent on a real socket, for what a tenant who controls its own agent's address
// can send the gate: each tool is a behaviour, chosen by the call's tool name and arguments.
// It answers /health, makes a session like any MCP server (initialize, then 202 for
// notifications) and never checks the gate's signature: it is whatever answers at the address.
// It counts the tool calls it started, those running now (the most at once too), and those
// whose request went away before it answered (the gate aborted them).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Tools and what they send. Arguments: `bytes`, `everyMs`, `chunk`, `ms`, `depth`, `text`. */
export const HOSTILE_TOOLS = [
  // A normal answer (JSON), after `ms` when given.
  'echo',
  // A valid result whose text is `bytes` long: as JSON, or one event with `sse: true`.
  'big',
  // One event's data line, `chunk` bytes every `everyMs`, never ended, up to `bytes` (then silence).
  'huge-line',
  // Keep-alive comments every `everyMs`, for ever: no event, no answer.
  'trickle',
  // Progress notifications (under the caller's token) every `everyMs`, for ever.
  'endless',
  // Events whose data is not JSON, every `everyMs`, for ever.
  'garbage',
  // Responses to request ids that are not the call's, every `everyMs`, for ever.
  'wrong-id',
  // A request to the client (sampling), then keep-alive comments, for ever.
  'server-request',
  // A result nested `depth` levels deep.
  'deep',
] as const;

export type HostileTool = (typeof HOSTILE_TOOLS)[number];

export interface HostileAgent {
  address: string;
  /** Tool calls started, in all. */
  started(): number;
  /** Tool calls running now, and the most that ran at once. */
  running(): number;
  maxRunning(): number;
  /** Tool calls whose request closed before the agent ended its answer. */
  abandoned(): number;
  close(): Promise<void>;
}

interface Message {
  jsonrpc?: string;
  id?: string | number;
  method?: string;
  params?: { name?: string; arguments?: Record<string, unknown>; _meta?: { progressToken?: unknown } };
}

const initialized = (id: Message['id']) => ({
  jsonrpc: '2.0',
  id,
  result: { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'hostile', version: '1' } },
});

const TOOL_LIST = {
  tools: HOSTILE_TOOLS.map((name) => ({ name, description: `hostile: ${name}`, inputSchema: { type: 'object' } })),
};

export async function startHostileAgent(): Promise<HostileAgent> {
  let started = 0;
  let running = 0;
  let maxRunning = 0;
  let abandoned = 0;
  const sockets = new Set<import('node:net').Socket>();

  const server = http.createServer((req, res) => {
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      return;
    }
    if (req.method !== 'POST' || !req.url?.endsWith('/mcp')) {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let message: Message;
      try {
        message = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Message;
      } catch {
        res.writeHead(400).end();
        return;
      }
      if (message.method === 'initialize') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(initialized(message.id)));
        return;
      }
      if (message.id === undefined) {
        res.writeHead(202).end();
        return;
      }
      if (message.method === 'tools/list') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: TOOL_LIST }));
        return;
      }
      if (message.method !== 'tools/call') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, error: { code: -32601, message: 'no' } }));
        return;
      }
      started += 1;
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      let over = false;
      const timers = new Set<NodeJS.Timeout>();
      const finish = () => {
        if (over) return;
        over = true;
        running -= 1;
        for (const timer of timers) clearInterval(timer);
      };
      res.once('finish', finish);
      res.once('close', () => {
        if (!res.writableFinished) abandoned += 1;
        finish();
      });
      serve(message, res, timers);
    });
  });

  function every(timers: Set<NodeJS.Timeout>, ms: number, fn: () => boolean | void): void {
    const timer = setInterval(() => {
      if (fn() === false) {
        clearInterval(timer);
        timers.delete(timer);
      }
    }, ms);
    timers.add(timer);
  }

  function serve(message: Message, res: http.ServerResponse, timers: Set<NodeJS.Timeout>): void {
    const tool = message.params?.name as HostileTool;
    const args = message.params?.arguments ?? {};
    const num = (key: string, fallback: number) => (typeof args[key] === 'number' ? args[key] : fallback);
    const everyMs = num('everyMs', 5);
    const result = (value: unknown) => ({ jsonrpc: '2.0', id: message.id, result: value });
    const sse = () => res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const event = (value: unknown) => res.write(`event: message\ndata: ${JSON.stringify(value)}\n\n`);
    switch (tool) {
      case 'echo': {
        const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result({ content: [{ type: 'text', text: typeof args.text === 'string' ? args.text : 'ok' }] })));
        const ms = num('ms', 0);
        if (ms > 0) timers.add(setTimeout(answer, ms));
        else answer();
        return;
      }
      case 'big': {
        const body = result({ content: [{ type: 'text', text: 'x'.repeat(num('bytes', 1024)) }] });
        if (args.sse === true) {
          sse();
          res.end(`event: message\ndata: ${JSON.stringify(body)}\n\n`);
        } else {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
        }
        return;
      }
      case 'huge-line': {
        sse();
        res.write('event: message\ndata: ');
        const piece = 'x'.repeat(num('chunk', 4096));
        let sent = 0;
        const limit = num('bytes', 9.5 * 1024 * 1024);
        every(timers, everyMs, () => {
          if (sent >= limit) return false;
          sent += piece.length;
          res.write(piece);
        });
        return;
      }
      case 'trickle':
        sse();
        every(timers, everyMs, () => void res.write(': .\n'));
        return;
      case 'endless': {
        sse();
        const token = message.params?._meta?.progressToken ?? 'none';
        let n = 0;
        every(timers, everyMs, () => void event({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: token, progress: (n += 1), message: 'y'.repeat(num('bytes', 256)) } }));
        return;
      }
      case 'garbage':
        sse();
        every(timers, everyMs, () => void res.write(`data: {"jsonrpc": "2.0", "id": ${JSON.stringify(message.id)}, "result": [[[\n\n`));
        return;
      case 'wrong-id': {
        sse();
        let n = 0;
        every(timers, everyMs, () => void event({ jsonrpc: '2.0', id: `not-${String(message.id)}-${(n += 1)}`, result: { content: [] } }));
        return;
      }
      case 'server-request':
        sse();
        event({ jsonrpc: '2.0', id: 'from-agent-1', method: 'sampling/createMessage', params: { messages: [], maxTokens: 1 } });
        every(timers, everyMs, () => void res.write(': waiting\n\n'));
        return;
      case 'deep':
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          // Built as text: JSON.stringify would itself overflow the stack this deep.
          `{"jsonrpc":"2.0","id":${JSON.stringify(message.id)},"result":{"content":[{"type":"text","text":"deep"}],"structuredContent":${'{"v":'.repeat(num('depth', 100_000))}1${'}'.repeat(num('depth', 100_000))}}}`,
        );
        return;
      default:
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, error: { code: -32602, message: `no tool ${String(tool)}` } }));
    }
  }

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 600_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `http://127.0.0.1:${port}`,
    started: () => started,
    running: () => running,
    maxRunning: () => maxRunning,
    abandoned: () => abandoned,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
