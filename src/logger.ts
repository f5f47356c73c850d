// The process logger: structured JSON (pretty only on a terminal), secrets redacted, no query
// values.
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-agentgate-auth"]',
  'headers.authorization',
  'headers.cookie',
  'token',
  '*.token',
];

/** What a request serializer is given: Fastify's request, or Node's. */
interface LoggedRequest {
  method?: string | undefined;
  url?: string | undefined;
  ip?: string | undefined;
  socket?: { remoteAddress?: string | undefined; remotePort?: number | undefined } | null | undefined;
}

/**
 * A URL as logged: its path and its query's parameter names, never their values, since a tool
 * may pass a secret in a query. `/x?token=s3cret&a=1` → `/x?token&a`.
 */
export function urlForLog(url: string): string {
  const q = url.indexOf('?');
  if (q === -1) return url;
  const names = url
    .slice(q + 1)
    .split('&')
    .filter(Boolean)
    .map((part) => part.split('=', 1)[0] ?? '');
  return names.length > 0 ? `${url.slice(0, q)}?${names.join('&')}` : url.slice(0, q);
}

/** Replaces Fastify's default `req` serializer, which logs the full URL. */
export function serializeRequest(req: LoggedRequest) {
  return {
    method: req.method,
    url: urlForLog(req.url ?? ''),
    remoteAddress: req.ip ?? req.socket?.remoteAddress,
    remotePort: req.socket?.remotePort,
  };
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'agentgate' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // Fastify keeps the serializers of the logger it is given over its own defaults.
    serializers: { req: serializeRequest },
  };
  if (destination) return pino(options, destination);
  // Pretty output on a terminal, when the (development) package is installed; JSON otherwise.
  if (process.stdout.isTTY && canResolve('pino-pretty')) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { destination: 2 } } });
  }
  return pino(options);
}

function canResolve(specifier: string): boolean {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    return false;
  }
}
