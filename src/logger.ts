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

/**
 * Log bytes held in memory while stdout takes no more (a log pipe whose reader is stuck or
 * slow): lines past it are dropped and counted, so a stuck log pipe costs log lines, never the
 * process's memory. Several seconds of lines at full load.
 */
export const LOG_BUFFER_MAX_BYTES = 16 * 1024 * 1024;

let droppedLines = 0;

/** Log lines dropped so far because stdout took no more (agentgate_log_lines_dropped_total). */
export function droppedLogLines(): number {
  return droppedLines;
}

/**
 * Where lines go when no destination is given: stdout (or `fd`), written asynchronously as
 * pino does by default, with what waits for a full pipe bounded by `maxBufferBytes`.
 */
export function stdoutDestination(fd = 1, maxBufferBytes = LOG_BUFFER_MAX_BYTES): DestinationStream {
  const stream = pino.destination({ dest: fd, sync: false, maxLength: maxBufferBytes });
  stream.on('drop', () => {
    droppedLines += 1;
  });
  return stream;
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
  // A stdout replaced in process (a test runner's, say) is written through, as pino would.
  if (process.stdout.write !== (Object.getPrototypeOf(process.stdout) as NodeJS.WritableStream).write) return pino(options);
  return pino(options, stdoutDestination(process.stdout.fd ?? 1));
}

function canResolve(specifier: string): boolean {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    return false;
  }
}
