// The reference agent's HTTP service: `GET /health` (open) and tool endpoints that accept only
// requests the gate signed for this agent (signature v2, contract §4.1): exec, streaming exec, files, MCP.
import { createReadStream } from 'node:fs';
import path from 'node:path';
import Fastify, { type FastifyReply } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import problemPlugin from '../http/plugins/problem.js';
import { ApiError } from '../domain/errors.js';
import { parseGateSignature, SIGNATURE_HEADER, verifyGateSignature, withinWindow, type SignatureCheck } from '../auth/gate-signature.js';
import type { GateKeySource } from './gate-keys.js';
import { NonceCache } from './nonce-cache.js';
import { callerSignal } from '../http/caller.js';
import { runProcess, type RunOptions } from './run-process.js';
import { directory, readableFile, writableFile, writeAtomically } from './files.js';
import { execEnv, registerMcp } from './agent-mcp.js';

export interface AgentAppOptions {
  /** The gate's signing keys and this agent's id. */
  keys: GateKeySource;
  /** Nonces already accepted (a fresh one by default). */
  nonces?: NonceCache;
  /** Real path of the directory tools are confined to. */
  root: string;
  logger: Logger;
  maxOutputBytes?: number;
  maxUploadBytes?: number;
}

const ExecBody = Type.Object(
  {
    command: Type.String({ minLength: 1, maxLength: 4096 }),
    args: Type.Array(Type.String({ maxLength: 65_536 }), { maxItems: 1000, default: [] }),
    cwd: Type.Optional(Type.String({ maxLength: 4096 })),
    // additionalProperties: without it, a key not matching the name pattern is let through.
    env: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String({ maxLength: 65_536 }), { additionalProperties: false }),
    ),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
    stdin: Type.Optional(Type.String({ maxLength: 1024 * 1024 })),
  },
  { additionalProperties: false },
);

const FilesQuery = Type.Object({ path: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false });

const DEFAULT_EXEC_TIMEOUT_MS = 30_000;

const REFUSED: Record<Exclude<SignatureCheck, 'ok'>, string> = {
  missing: 'the gate signature is missing',
  malformed: 'the gate signature is malformed (signature v2 is required)',
  unknown_key: 'the gate signature names an unknown or expired key',
  expired: 'the gate signature is expired (its time is more than 60 s from this clock)',
  mismatch: 'the gate signature is a mismatch (not for this agent, method, path and query)',
  replayed: 'the gate signature was replayed (its nonce was already used)',
};

export async function buildAgentApp(options: AgentAppOptions) {
  const nonces = options.nonces ?? new NonceCache();
  const maxOutput = options.maxOutputBytes ?? 1024 * 1024;
  const maxUpload = options.maxUploadBytes ?? 100 * 1024 * 1024;
  const app = Fastify({
    loggerInstance: options.logger,
    bodyLimit: 2 * 1024 * 1024,
    // The gate keeps its sockets to an agent open while its connection is cached (up to
    // AGENTGATE_CONN_IDLE_MS, 5 minutes by default): an agent that closed them after Node's
    // 5 s would make every call after a pause connect anew. The gate closes first.
    keepAliveTimeout: 10 * 60_000,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  await app.register(problemPlugin);

  /** The signature check of contract §4.1, cheapest refusals first; the nonce is spent last. */
  const check = async (header: string | undefined, method: string, pathAndQuery: string): Promise<SignatureCheck | 'full'> => {
    const parsed = parseGateSignature(header);
    if (typeof parsed === 'string') return parsed;
    if (!withinWindow(parsed.seconds, Date.now())) return 'expired';
    const key = await options.keys.find(parsed.kid);
    const agentId = options.keys.agentId;
    if (!key || agentId === undefined) return 'unknown_key';
    const verdict = verifyGateSignature(parsed, key, { agentId, method, pathAndQuery });
    if (verdict !== 'ok') return verdict;
    const seen = nonces.remember(parsed.nonce);
    return seen === 'new' ? 'ok' : seen === 'seen' ? 'replayed' : 'full';
  };

  // Every route but GET /health needs the gate's signature, checked on the raw path and query.
  app.addHook('onRequest', async (request) => {
    if (request.method === 'GET' && request.url === '/health') return;
    const header = request.headers[SIGNATURE_HEADER];
    const result = await check(typeof header === 'string' ? header : undefined, request.method, request.url);
    if (result === 'ok') return;
    if (result === 'full') {
      request.log.warn('refused a signed request: too many nonces to remember');
      throw new ApiError('RATE_LIMITED', 'too many signed requests in the replay window', { retryAfter: 1 });
    }
    request.log.warn({ check: result }, 'refused an unsigned or badly signed request');
    throw new ApiError('UNAUTHENTICATED', REFUSED[result]);
  });

  app.get('/health', () => ({ status: 'ok' }));

  const execCwd = (cwd: string | undefined) => directory(options.root, cwd ?? '.', 'cwd');

  /** Runs an exec request's command, killed when the caller goes away. */
  const execute = (body: Static<typeof ExecBody>, cwd: string, reply: FastifyReply, onOutput?: RunOptions['onOutput']) =>
    runProcess({
      command: body.command,
      args: body.args,
      cwd,
      env: execEnv(options.root, body.env),
      stdin: body.stdin,
      timeoutMs: body.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
      maxOutputBytes: maxOutput,
      signal: callerSignal(reply),
      ...(onOutput ? { onOutput } : {}),
    });

  app.post('/exec', { schema: { body: ExecBody } }, async (request, reply) => {
    const body = request.body;
    const result = await execute(body, await execCwd(body.cwd), reply);
    request.log.info(
      { command: body.command, exitCode: result.exitCode, signal: result.signal, timedOut: result.timedOut, aborted: result.aborted, ms: result.durationMs },
      'exec finished',
    );
    if (result.spawnError !== undefined) throw new ApiError('INVALID_REQUEST', `the command could not be started: ${result.spawnError}`);
    return result;
  });

  app.post('/exec/stream', { schema: { body: ExecBody } }, async (request, reply) => {
    const body = request.body;
    const cwd = await execCwd(body.cwd);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const result = await execute(body, cwd, reply, (stream, chunk) => {
      if (res.destroyed) return undefined;
      if (res.write(`${JSON.stringify({ stream, data: chunk.toString('utf8') })}\n`)) return undefined;
      // The caller reads slower than the command writes: hold the command's output until it drains.
      return new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    });
    const { stdout: _o, stderr: _e, ...exit } = result;
    if (!res.destroyed) res.end(`${JSON.stringify({ exit })}\n`);
    request.log.info({ command: body.command, exitCode: result.exitCode, aborted: result.aborted }, 'streamed exec finished');
  });

  // Files are streamed, never buffered: the raw body goes straight to disk.
  await app.register(async (plugin) => {
    const files = plugin.withTypeProvider<TypeBoxTypeProvider>();
    files.removeAllContentTypeParsers();
    files.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

    files.get('/files', { schema: { querystring: FilesQuery } }, async (request, reply) => {
      const { file, size } = await readableFile(options.root, request.query.path);
      reply.header('content-length', String(size));
      return reply.type('application/octet-stream').send(createReadStream(file));
    });

    files.put('/files', { schema: { querystring: FilesQuery } }, async (request, reply) => {
      const file = await writableFile(options.root, request.query.path);
      if (Number(request.headers['content-length'] ?? 0) > maxUpload) throw new ApiError('PAYLOAD_TOO_LARGE', `files are limited to ${maxUpload} bytes`);
      const written = await writeAtomically(file, request.raw, maxUpload);
      return reply.code(200).send({ path: path.relative(options.root, file), bytes: written });
    });
  });

  await app.register(registerMcp, { root: options.root, maxOutputBytes: maxOutput, maxUploadBytes: maxUpload, logger: options.logger });

  return app;
}
