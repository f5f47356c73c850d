// Forwards one tool call through the agent's cached undici pool, streaming both ways with
// backpressure, cancelling the agent's request the moment the caller goes away, and never
// retrying (tool calls have side effects).
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { AgentConnection } from '../transport/agent-transport.js';
import { BodyTooLarge, CallerGone, HeadersTimeout, RequestNotSent, WorkEnded, failureAnswer } from '../domain/failures.js';

/** Counts bytes through and fails past `limit`. */
class ByteLimit extends Transform {
  #seen = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.limit) {
      done(new BodyTooLarge(`the request body is larger than ${this.limit} bytes`));
      return;
    }
    done(null, chunk);
  }
}

export interface ForwardOptions {
  conn: AgentConnection;
  method: string;
  /** Path and query as sent to the agent (base path included). */
  path: string;
  headers: Record<string, string | string[]>;
  /** The caller's request (or a body of the gate's own), streamed as the body when there is one. */
  body: Readable | undefined;
  bodyLimit: number;
  headersTimeoutMs: number;
  /** Aborted when the caller goes away. */
  callerSignal: AbortSignal;
  /**
   * Given the request's abort as soon as it exists, for the work in flight: an abort with
   * WorkEnded, before the headers or during the body, is its authority's end or its agent's going.
   */
  onStart?: ((abort: (reason: Error) => void) => void) | undefined;
}

export interface Forwarded {
  statusCode: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Readable;
  /** Aborts the agent's request (e.g. the caller left mid-response). */
  abort(reason: Error): void;
}

/**
 * Sends the request and resolves once the agent's response headers arrive. Throws ApiError:
 * PAYLOAD_TOO_LARGE, AGENT_RESPONSE_TIMEOUT, AGENT_UNREACHABLE (a new socket could not be
 * opened: nothing was sent), AGENT_CONNECTION_LOST; or CallerGone when the caller left first.
 */
export async function forwardRequest(options: ForwardOptions): Promise<Forwarded> {
  const controller = new AbortController();
  const abort = (reason: Error) => controller.abort(reason);
  options.onStart?.(abort);
  const onCaller = () => controller.abort(options.callerSignal.reason);
  if (options.callerSignal.aborted) onCaller();
  else options.callerSignal.addEventListener('abort', onCaller, { once: true });
  const timer = setTimeout(
    () => controller.abort(new HeadersTimeout(`the agent sent no response headers within ${options.headersTimeoutMs} ms`)),
    options.headersTimeoutMs,
  );
  let body: Readable | undefined;
  // Only the caller's own stream failing means the caller left. The limiter also fails when
  // undici gives up the upload because the agent went away; that is the agent's failure.
  let uploadError: Error | undefined;
  if (options.body) {
    const limiter = new ByteLimit(options.bodyLimit);
    body = limiter;
    options.body.pipe(limiter);
    options.body.once('error', (error) => {
      uploadError = error;
      limiter.destroy(error);
    });
    limiter.on('error', (error) => {
      if (error instanceof BodyTooLarge) {
        uploadError = error;
        controller.abort(error);
      }
    });
  }
  // Settles the moment the request is aborted (the caller left, the headers timeout fired,
  // the body grew too large), whatever phase it is in: undici settles an aborted request only
  // once a socket it is still connecting has connected or failed.
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(controller.signal.reason as Error);
    controller.signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const sent = options.conn.request({
      method: options.method,
      path: options.path,
      headers: options.headers,
      body: body ?? null,
      signal: controller.signal,
    });
    sent.catch(() => undefined); // settles later when abandoned; nobody waits for it then
    const response = await Promise.race([sent, aborted]);
    clearTimeout(timer);
    return {
      statusCode: response.statusCode,
      headers: response.headers,
      body: response.body,
      abort,
    };
  } catch (error) {
    clearTimeout(timer);
    options.callerSignal.removeEventListener('abort', onCaller);
    body?.destroy();
    const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
    if (reason instanceof BodyTooLarge || uploadError instanceof BodyTooLarge) {
      throw failureAnswer('AGENTGATE_PROXY_BODY_TOO_LARGE', `the request body is larger than ${options.bodyLimit} bytes`);
    }
    // The caller left (its upload broke, or its connection closed): not the agent's fault.
    if (options.callerSignal.aborted || uploadError) throw new CallerGone();
    const where = { workspaceId: options.conn.target.workspaceId, agentId: options.conn.agentId };
    if (reason instanceof HeadersTimeout || reason instanceof WorkEnded) throw reason.answer(where);
    // The request never left, so the agent is unreachable, not a connection lost under a
    // request that may have run.
    if (reason === undefined && error instanceof RequestNotSent) throw error.answer(where);
    throw failureAnswer('AGENTGATE_PROXY_CONNECTION_LOST', 'the connection to the agent broke before its response began', where);
  } finally {
    if (onAbort) controller.signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Pipes the agent's response body to the caller. If either side breaks, the caller's response
 * is destroyed, so the caller sees an incomplete response, never a clean end. (`pipe` and three
 * listeners, not stream.pipeline: pipeline makes and aborts an AbortController per call, whose
 * DOMException alone cost more than the rest of the relay.)
 */
export function relayBody(
  forwarded: Forwarded,
  res: ServerResponse,
  /**
   * Told the outcome at once, before the response's other `close` listeners run (the server
   * span's among them), so whatever it ends ends inside the request; a promise continuation
   * may run after them.
   */
  onSettled?: (outcome: 'complete' | 'broken') => void,
): Promise<'complete' | 'broken'> {
  const body = forwarded.body;
  return new Promise((resolve) => {
    let settled = false;
    const settle = (outcome: 'complete' | 'broken', error?: Error) => {
      if (settled) return;
      settled = true;
      // The error listeners stay: a stream destroyed below may still emit its error.
      res.off('finish', onFinish);
      res.off('close', onClose);
      if (outcome === 'broken') {
        body.unpipe(res);
        forwarded.abort(error ?? new Error('relay failed'));
        res.destroy();
      }
      try {
        onSettled?.(outcome);
      } finally {
        resolve(outcome);
      }
    };
    const onError = (error: Error) => settle('broken', error);
    const onFinish = () => settle('complete');
    // A close before the finish: the caller's connection went away mid-response.
    const onClose = () => settle(res.writableFinished ? 'complete' : 'broken', new Error('the caller went away'));
    body.on('error', onError);
    res.on('error', onError);
    res.once('finish', onFinish);
    // First among the close listeners: a caller gone mid-response settles the relay before the
    // request's own close handling sees it.
    res.prependOnceListener('close', onClose);
    body.pipe(res);
  });
}
