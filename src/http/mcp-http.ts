// MCP's Streamable HTTP transport (stateless) on a Fastify route, shared by the gate's front door
// and the reference agent's /mcp: the body parsed here (so that malformed JSON is a JSON-RPC
// parse error, not a problem+json), one transport per request handed the raw request and
// response, and the 405 a stateless server gives to GET (no server-initiated stream) and DELETE
// (no session to end).
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { isJsonContentType } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import { MAX_BATCH_SIZE } from '@modelcontextprotocol/sdk/server/requestBody.js';

/** The body of a POST that is not JSON at all. */
export const UNPARSABLE = Symbol('unparsable JSON');

/** JSON-RPC's own error codes (the spec's, not the SDK's enum, which also holds MCP's). */
export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_INVALID_REQUEST = -32600;
export const JSONRPC_INVALID_PARAMS = -32602;

/**
 * Parses every POST body of this plugin's routes as JSON, whatever its declared type (the
 * transport checks the type itself and answers 415), keeping a failure as UNPARSABLE. The body
 * limit is Fastify's (413 problem+json beyond it).
 */
export function parseMcpBodies(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body: Buffer, done) => {
    try {
      done(null, JSON.parse(body.toString('utf8')) as unknown);
    } catch {
      done(null, UNPARSABLE);
    }
  });
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

/**
 * Serves one POST with a fresh stateless transport connected to `server`. The response is the
 * transport's from here on (the reply is hijacked). When the response closes, before or after
 * it completed, the transport and the server close too, which aborts the signal of every
 * request still being handled: a caller that goes away cancels its call. `observe` sees every
 * message the server sends, before it is sent; `sent`, once it was.
 *
 * Answers are written with backpressure: the transport writes whatever it is given, so an
 * answer waits while the caller's socket wants a drain, and a caller that takes no byte for
 * `drainTimeoutMs` is cut off (its calls end as for a caller who left).
 */
export async function serveMcpPost(
  request: FastifyRequest,
  reply: FastifyReply,
  server: McpServer | Server,
  body: unknown,
  drainTimeoutMs: number,
  observe?: (message: JSONRPCMessage) => void,
  sent?: (message: JSONRPCMessage) => void,
): Promise<void> {
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  await server.connect(transport);
  const res = reply.raw;
  const send = transport.send.bind(transport);
  transport.send = async (message, options) => {
    observe?.(message);
    if (isResponse(message) && res.writableNeedDrain) await drained(res, drainTimeoutMs);
    if (res.destroyed) return;
    await send(message, options);
    sent?.(message);
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
