// A TCP proxy between the app and a server (PostgreSQL or an agent) that can be told to fail:
// - `pass` forwards normally;
// - `latency` forwards each chunk after `latencyMs`;
// - `throttle` forwards at most `bytesPerSecond` in each direction;
// - `slow-accept` holds the server's first answer on each new connection for `latencyMs` (a
//   server slow to accept: busy, far away, expensive authentication), then passes;
// - `blackhole` keeps sockets open but forwards nothing, like a network that drops packets;
// - `cut` resets every connection and refuses new ones.
// `resetInFlight()` resets the connections open now and keeps accepting new ones (a failover).
import net from 'node:net';

export type FaultMode = 'pass' | 'cut' | 'blackhole' | 'latency' | 'throttle' | 'slow-accept';

export interface FaultSettings {
  latencyMs?: number;
  bytesPerSecond?: number;
}

export interface FaultProxy {
  port: number;
  /** The given URL with its host and port replaced by the proxy's. */
  urlFor(url: string): string;
  setMode(mode: FaultMode, settings?: FaultSettings): void;
  readonly mode: FaultMode;
  /** Resets every connection open now; new ones are served in the current mode. */
  resetInFlight(): void;
  /** Connections open through the proxy now. */
  readonly open: number;
  /** Sends new connections to another port (the server restarted elsewhere). */
  retarget(port: number): void;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket | undefined;
}

export async function startFaultProxy(targetHost: string, initialPort: number): Promise<FaultProxy> {
  let targetPort = initialPort;
  let mode: FaultMode = 'pass';
  let settings: Required<FaultSettings> = { latencyMs: 0, bytesPerSecond: 0 };
  const pairs = new Set<Pair>();
  const timers = new Set<NodeJS.Timeout>();

  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  /** Forwards one direction according to the mode at the time each chunk arrives. */
  const relay = (from: net.Socket, to: net.Socket, fromServer: boolean) => {
    // Chunks are delivered in order: each waits at least for the one before it.
    let nextAt = 0;
    let first = true;
    from.on('data', (chunk: Buffer) => {
      if (mode === 'blackhole' || mode === 'cut') return; // swallowed
      const now = Date.now();
      let at = now;
      if (mode === 'latency' || (mode === 'slow-accept' && fromServer && first)) at = now + settings.latencyMs;
      first = false;
      if (mode === 'throttle' && settings.bytesPerSecond > 0) at = Math.max(now, nextAt) + (chunk.length * 1000) / settings.bytesPerSecond;
      at = Math.max(at, nextAt);
      nextAt = at;
      if (at <= now) to.write(chunk);
      else later(at - now, () => to.destroyed || to.write(chunk));
    });
  };

  const server = net.createServer((client) => {
    if (mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    const pair: Pair = { client, upstream: undefined };
    pairs.add(pair);
    client.on('error', () => undefined);
    client.on('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (mode === 'blackhole') return; // accepted, never answered
    const upstream = net.connect(targetPort, targetHost);
    pair.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    relay(client, upstream, false);
    relay(upstream, client, true);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const resetAll = () => {
    for (const pair of pairs) {
      pair.client.resetAndDestroy();
      pair.upstream?.destroy();
    }
    pairs.clear();
  };

  return {
    port,
    urlFor(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    get mode() {
      return mode;
    },
    get open() {
      return pairs.size;
    },
    setMode(next: FaultMode, given: FaultSettings = {}) {
      mode = next;
      settings = { latencyMs: given.latencyMs ?? 0, bytesPerSecond: given.bytesPerSecond ?? 0 };
      if (next === 'cut') resetAll();
    },
    resetInFlight: resetAll,
    retarget(port: number) {
      targetPort = port;
    },
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream?.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
