// An undici connect function of our own, built on net.connect / tls.connect. undici ignores an
// abort signal while a socket is still connecting (undici issue #386; a black-holed dial settled
// 10.4 s after its abort) and its own connect timer ticks about once a second; here both the
// caller's signal and our timer are honoured within milliseconds.
import net from 'node:net';
import tls from 'node:tls';
import type { buildConnector } from 'undici';
import { ConnectAbandoned, ConnectTimeout } from '../../domain/failures.js';


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
          () => settle(new ConnectTimeout(`connecting took longer than ${options.timeoutMs} ms`)),
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
  return reason instanceof Error ? reason : new ConnectAbandoned('connect aborted', { cause: reason });
}

// Codes of a connect that failed before the socket opened: no byte of a request was sent.
const NOT_CONNECTED = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  'AGENTGATE_CONNECT_TIMEOUT',
]);

/** The error is a connect that never opened its socket (refused, unresolvable, timed out, TLS refused). */
export function neverConnected(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return NOT_CONNECTED.has(code) || isTlsRefusal(code);
}

/** A certificate or handshake refusal (Node's ERR_TLS_* / ERR_SSL_* and OpenSSL's *CERT* codes). */
export function isTlsRefusal(code: string): boolean {
  return code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT');
}
