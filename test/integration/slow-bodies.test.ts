// A bounded time for every request (AGENTGATE_REQUEST_TIMEOUT_MS): a body that trickles in is cut
// off, a refusal sent before the body was read closes the connection, and Expect: 100-continue
// is answered only once the token is accepted.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';

let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ env: { AGENTGATE_REQUEST_TIMEOUT_MS: '300' }, maxEventLoopDelayMs: 60_000 });
});
afterAll(async () => {
  await t?.close();
});

interface RawExchange {
  socket: net.Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves when the server has closed the connection. */
  closed: Promise<void>;
}

async function rawRequest(head: string[]): Promise<RawExchange> {
  const url = new URL(t.url);
  const socket = net.connect(Number(url.port), url.hostname);
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  let data = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (data += chunk));
  const closed = new Promise<void>((resolve) => {
    socket.once('end', resolve);
    socket.once('close', resolve);
  });
  socket.write(`${[...head, `Host: ${url.host}`].join('\r\n')}\r\n\r\n`);
  return { socket, received: () => data, closed };
}

/** Writes one byte every 50 ms until the socket closes; stops the trickle. */
function trickle(socket: net.Socket): () => void {
  const timer = setInterval(() => {
    if (socket.destroyed || !socket.writable) clearInterval(timer);
    else socket.write('x');
  }, 50);
  return () => clearInterval(timer);
}

/** Resolves true when `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([p.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  clearTimeout(timer);
  return result;
}

const body = (text: string) => text.slice(text.lastIndexOf('\r\n\r\n') + 4);

describe('slow bodies', () => {
  it('closes the connection after refusing a request whose body was not read', async () => {
    const x = await rawRequest(['POST /tokens HTTP/1.1', 'Content-Type: application/json', 'Content-Length: 100000']);
    const stop = trickle(x.socket);
    try {
      // The trickle would take over an hour; the refusal ends the connection instead.
      expect(await settlesWithin(x.closed, 5_000)).toBe(true);
      expect(x.received()).toMatch(/^HTTP\/1\.1 401 /);
      expect(x.received()).toMatch(/\r\nconnection: close\r\n/i);
      expect(JSON.parse(body(x.received()))).toMatchObject({ code: 'UNAUTHENTICATED' });
    } finally {
      stop();
      x.socket.destroy();
    }
  });

  it('cuts off an accepted request whose body does not arrive within the request timeout', async () => {
    const x = await rawRequest([
      'POST /tokens HTTP/1.1',
      `Authorization: Bearer ${ENV_ADMIN_TOKEN}`,
      'Content-Type: application/json',
      'Content-Length: 100000',
    ]);
    const stop = trickle(x.socket);
    try {
      // A generous multiple of the 300 ms bound, far short of the trickle's own length.
      expect(await settlesWithin(x.closed, 5_000)).toBe(true);
      const text = x.received();
      if (text !== '') {
        expect(text).toMatch(/^HTTP\/1\.1 400 /);
        expect(JSON.parse(body(text))).toMatchObject({ code: 'INVALID_REQUEST' });
      }
    } finally {
      stop();
      x.socket.destroy();
    }
    // The process is unharmed.
    expect((await t.call('GET', '/healthz')).status).toBe(200);
  });
});

describe('Expect: 100-continue', () => {
  it('is not answered for an unknown token: the refusal comes first and closes the connection', async () => {
    const x = await rawRequest([
      'POST /tokens HTTP/1.1',
      'Authorization: Bearer agadm_not-a-token',
      'Content-Type: application/json',
      'Content-Length: 40',
      'Expect: 100-continue',
    ]);
    try {
      expect(await settlesWithin(x.closed, 5_000)).toBe(true);
      expect(x.received()).not.toMatch(/100 Continue/);
      expect(x.received()).toMatch(/^HTTP\/1\.1 401 /);
    } finally {
      x.socket.destroy();
    }
  });

  it('is answered once the token is accepted, and the request then completes', async () => {
    const json = JSON.stringify({ name: 'continued', scope: 'conn' });
    const x = await rawRequest([
      'POST /tokens HTTP/1.1',
      `Authorization: Bearer ${ENV_ADMIN_TOKEN}`,
      'Content-Type: application/json',
      `Content-Length: ${Buffer.byteLength(json)}`,
      'Expect: 100-continue',
    ]);
    try {
      const started = performance.now();
      while (!x.received().includes('\r\n\r\n') && performance.now() - started < 5_000) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(x.received()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      x.socket.write(json);
      while (!/HTTP\/1\.1 201 /.test(x.received()) && performance.now() - started < 5_000) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(x.received()).toMatch(/HTTP\/1\.1 201 /);
    } finally {
      x.socket.destroy();
    }
  });
});
