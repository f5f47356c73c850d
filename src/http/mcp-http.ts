// MCP's Streamable HTTP transport (stateless) on a Fastify route, shared by the gate's front door
// and the reference agent's /mcp: the body parsed here (so that malformed JSON is a JSON-RPC
// parse error, not a problem+json), one transport per request handed the raw request and
// response, and the 405 a stateless server gives to GET (no server-initiated stream) and DELETE
// (no session to end).
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { JSONRPCMessageSchema, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import { isJsonContentType } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import { MAX_BATCH_SIZE } from '@modelcontextprotocol/sdk/server/requestBody.js';
import { MAX_JSON_DEPTH, nestedDeeperThan } from '../domain/json-depth.js';

/** The body of a POST that is not JSON at all. */
export const UNPARSABLE = Symbol('unparsable JSON');
/** The body of a POST that nests deeper than MAX_JSON_DEPTH. */
export const TOO_DEEP = Symbol('JSON nested too deep');

/** JSON-RPC's own error codes (the spec's, not the SDK's enum, which also holds MCP's). */
export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_INVALID_REQUEST = -32600;
export const JSONRPC_INVALID_PARAMS = -32602;
export const JSONRPC_INTERNAL_ERROR = -32603;

/**
 * Parses every POST body of this plugin's routes as JSON, whatever its declared type (the
 * transport checks the type itself and answers 415), keeping a failure as UNPARSABLE and a body
 * nested deeper than MAX_JSON_DEPTH as TOO_DEEP. The body limit is Fastify's (413 problem+json
 * beyond it).
 */
export function parseMcpBodies(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body: Buffer, done) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8')) as unknown;
    } catch {
      done(null, UNPARSABLE);
      return;
    }
    done(null, nestedDeeperThan(parsed, MAX_JSON_DEPTH) ? TOO_DEEP : parsed);
  });
}

/** The JSON-RPC error for a body `parseMcpBodies` could not take, or undefined for a message. */
export function unreadableBody(body: unknown): { code: number; message: string } | undefined {
  if (body === UNPARSABLE || body === undefined) return { code: JSONRPC_PARSE_ERROR, message: 'Parse error: the body is not JSON' };
  if (body === TOO_DEEP) return { code: JSONRPC_INVALID_REQUEST, message: `Invalid Request: the message nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep` };
  return undefined;
}

/** A JSON-RPC error response without an id (the request could not be read). */
export function jsonRpcError(reply: FastifyReply, status: number, code: number, message: string, headers: Record<string, string> = {}): FastifyReply {
  return reply
    .code(status)
    .headers(headers)
    .type('application/json')
    .send(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

/** GET and DELETE on a stateless endpoint: 405, as the transport's specification allows. */
export function methodNotAllowed(reply: FastifyReply, what: string): FastifyReply {
  return jsonRpcError(reply, 405, -32000, `Method not allowed: ${what}`, { allow: 'POST' });
}

/**
 * Pure: whether the transport will refuse this POST before it reads a message (an Accept without
 * both types, a content type that is not JSON, too large a batch, a message that is not
 * JSON-RPC): StreamableHTTPServerTransport's own checks, made first so that such a request gets
 * its 406, 415 or 400 without waiting for the gate to dial the agent.
 */
export function transportRefuses(headers: IncomingHttpHeaders, body: unknown): boolean {
  const accept = headers.accept;
  if (!accept?.includes('application/json') || !accept.includes('text/event-stream')) return true;
  if (!isJsonContentType(headers['content-type'])) return true;
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  if (messages.length > MAX_BATCH_SIZE) return true;
  return !messages.every((message) => JSONRPCMessageSchema.safeParse(message).success);
}

let validator: AjvJsonSchemaValidator | undefined;

/**
 * One JSON Schema validator for every per-request server: each server would otherwise compile
 * its own (about a millisecond per request).
 */
export function sharedSchemaValidator(): AjvJsonSchemaValidator {
  return (validator ??= new AjvJsonSchemaValidator());
}

export interface ServeOptions {
  /** How long an answer waits for a caller that takes no byte before the response is cut. */
  drainTimeoutMs: number;
  /** Sees every message the server sends, before it is sent (and an internal error sent instead of one). */
  observe?: ((message: JSONRPCMessage) => void) | undefined;
  /** Told of every message once it was sent. */
  sent?: ((message: JSONRPCMessage) => void) | undefined;
  /** Whether an internal error (-32603) is someone else's, relayed with its own text (an agent's). */
  relayed?: ((message: JSONRPCMessage) => boolean) | undefined;
  log: FastifyBaseLogger;
}

/**
 * Serves one POST with a fresh stateless transport connected to `server`. The response is the
 * transport's from here on (the reply is hijacked). When the response closes, before or after
 * it completed, the transport and the server close too, which aborts the signal of every
 * request still being handled: a caller that goes away cancels its call.
 *
 * What is sent is ruled here, whatever the server does:
 * - answers are written with backpressure (the transport writes whatever it is given): an
 *   answer waits while the caller's socket wants a drain, and a caller that takes no byte for
 *   `drainTimeoutMs` is cut off (its calls end as for a caller who left);
 * - an internal error (-32603) says only that, unless `relayed`: its text (a stack overflow's,
 *   say) is logged, never sent;
 * - an answer the transport cannot write (one it cannot serialise) becomes an internal error for
 *   its request, rather than no answer at all (the caller would wait for ever).
 */
export async function serveMcpPost(request: FastifyRequest, reply: FastifyReply, server: McpServer | Server, body: unknown, options: ServeOptions): Promise<void> {
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  await server.connect(transport);
  const res = reply.raw;
  // The transport reports a message it could not write (one it cannot serialise) to onerror and
  // carries on as if it were sent: the caller would wait for an answer that never comes. Thrown
  // from onerror during a send, the failure ends that send before the transport records it.
  let sending = false;
  const onerror = transport.onerror;
  transport.onerror = (error) => {
    onerror?.(error);
    if (sending) throw error;
  };
  const send = transport.send.bind(transport);
  const sendNow = async (message: JSONRPCMessage, sendOptions: Parameters<typeof send>[1]) => {
    sending = true;
    try {
      await send(message, sendOptions);
    } finally {
      sending = false;
    }
  };
  transport.send = async (given, sendOptions) => {
    let message = given;
    if (isInternalError(message) && !options.relayed?.(message)) {
      options.log.error({ code: 'INTERNAL', err: message.error.message, rpcId: message.id }, 'internal error answering an MCP request');
      message = internalError(message.id);
    }
    options.observe?.(message);
    if (isResponse(message) && res.writableNeedDrain) await drained(res, options.drainTimeoutMs);
    if (res.destroyed) return;
    try {
      await sendNow(message, sendOptions);
    } catch (error) {
      const id = isResponse(message) ? (message as { id?: RequestId }).id : undefined;
      if (id === undefined) throw error;
      options.log.error({ code: 'INTERNAL', err: (error as Error).message, rpcId: id }, 'an MCP answer could not be sent; an internal error goes instead');
      const instead = internalError(id);
      options.observe?.(instead);
      // Failing that too, the response is cut rather than ended cleanly without the answer.
      await sendNow(instead, sendOptions).catch(() => res.destroy());
    }
    options.sent?.(message);
  };
  reply.hijack();
  const close = () => {
    void transport.close().catch(() => undefined);
    void server.close().catch(() => undefined);
  };
  if (res.destroyed) {
    // The caller already left: no handler may start (and acquire what nobody would let go).
    close();
    return;
  }
  res.once('close', close);
  await transport.handleRequest(request.raw, res, body);
}


function isInternalError(message: JSONRPCMessage): message is JSONRPCMessage & { id: RequestId; error: { code: number; message: string } } {
  const error = (message as { error?: { code?: unknown } }).error;
  return typeof error === 'object' && error !== null && error.code === JSONRPC_INTERNAL_ERROR && 'id' in message;
}

const internalError = (id: RequestId): JSONRPCMessage => ({ jsonrpc: '2.0', id, error: { code: JSONRPC_INTERNAL_ERROR, message: 'Internal error' } });

const isResponse = (message: JSONRPCMessage): boolean => 'id' in message && !('method' in message);

/** Resolves once `res` drained or closed; past `timeoutMs` without a drain, destroys it first. */
function drained(res: ServerResponse, timeoutMs: number): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(() => {
      res.destroy();
      done();
    }, timeoutMs);
    res.once('drain', done);
    res.once('close', done);
  });
}
