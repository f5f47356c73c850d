// An undici connect function of our own, built on net.connect / tls.connect. undici ignores an
// abort signal while a socket is still connecting (undici issue #386; a black-holed dial settled
// 10.4 s after its abort) and its own connect timer ticks about once a second; here both the
// caller's signal and our timer are honoured within milliseconds.
import net from 'node:net';
import tls from 'node:tls';
import type { buildConnector } from 'undici';

export class ConnectTimeoutError extends Error {
  override name = 'ConnectTimeoutError';
  readonly code = 'AGENTGATE_CONNECT_TIMEOUT';
}

export interface ConnectorOptions {
  /** Bound on establishing one socket (TCP and TLS handshakes). */
  timeoutMs: number;
  /** The signal of the dial in progress, if any: aborting it destroys a connecting socket. */
  currentSignal?: () => AbortSignal | undefined;
  /**
   * Told of each socket while it connects, with a way to give it up; returns the function
   * that forgets it. Its owner gives up sockets nobody waits for any more.
   */
  track?: (giveUp: (reason: Error) => void) => () => void;
}

export function createConnector(options: ConnectorOptions): buildConnector.connector {
  return (opts, callback) => {
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    // URL hostnames keep IPv6 brackets; sockets want them off.
    const host = opts.hostname.replace(/^\[(.*)\]$/, '$1');
    const signal = options.currentSignal?.();
    if (signal?.aborted) {
      callback(abortError(signal), null);
      return;
    }
    let socket: net.Socket;
    if (opts.protocol === 'https:') {
      socket = tls.connect({
        host,
        port,
        servername: opts.servername ?? (net.isIP(host) ? undefined : host),
        ALPNProtocols: ['http/1.1'],
        // Certificates are always verified (the default); never rejectUnauthorized: false.
      });
    } else {
      socket = net.connect({ host, port });
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    const ready = opts.protocol === 'https:' ? 'secureConnect' : 'connect';
    let settled = false;
    const settle = (error: Error | null) => {
      if (settled) return;
      settled = true;
      untrack?.();
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeListener('error', onError);
      socket.removeListener(ready, onReady);
      if (error) {
        socket.destroy();
        callback(error, null);
      } else {
        callback(null, socket);
      }
    };
    const onReady = () => settle(null);
    const onError = (error: Error) => settle(error);
    const onAbort = () => settle(abortError(signal));
    // During a dial its own signal is the bound; afterwards (new sockets for proxied requests)
    // this timer is.
    const timer = signal
      ? undefined
      : setTimeout(
          () => settle(new ConnectTimeoutError(`connecting took longer than ${options.timeoutMs} ms`)),
          options.timeoutMs,
        );
    socket.once(ready, onReady);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    const untrack = options.track?.((reason) => settle(reason));
  };
}

function abortError(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error('connect aborted', { cause: reason });
}
