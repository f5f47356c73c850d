// The reference agent's MCP server at /mcp (Streamable HTTP, stateless: a server per request):
// exec, read_file, write_file and list_directory, confined to --root exactly as the HTTP tool
// routes are. The gate's signature is checked on /mcp like on every other route (agent-app.ts).
// Arguments are validated by their zod schemas: a bad one is a tool error, never a crash.
import { readFile, readdir, lstat } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { ApiError } from '../domain/errors.js';
import { jsonRpcError, methodNotAllowed, parseMcpBodies, serveMcpPost, sharedSchemaValidator, unreadableBody } from '../http/mcp-http.js';
import { directory, readableFile, writableFile, writeAtomically, fileError } from './files.js';
import { runProcess, type RunResult } from './run-process.js';

export interface AgentMcpOptions {
  /** Real path of the directory tools are confined to. */
  root: string;
  /** Bytes kept of a command's stdout and of its stderr each, and the most read_file returns. */
  maxOutputBytes: number;
  maxUploadBytes: number;
  logger: Logger;
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
/** Entries list_directory returns at most; a larger directory is cut, and says so. */
const MAX_DIRECTORY_ENTRIES = 1000;

/** The environment a command runs with: nothing of the agent's own (its token least of all). */
export function execEnv(root: string, extra: Record<string, string> | undefined): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: root,
    LANG: process.env.LANG ?? 'C.UTF-8',
    ...extra,
  };
}

// The same bounds as the HTTP exec route's schema (agent-app.ts).
const execInput = {
  command: z.string().min(1).max(4096).describe('the program to run (looked up on PATH); no shell'),
  args: z.array(z.string().max(65_536)).max(1000).default([]).describe('its arguments, each passed as is'),
  cwd: z.string().max(4096).optional().describe('working directory, relative to the workspace root (default: the root)'),
  timeoutMs: z.number().int().min(1).max(3_600_000).optional().describe(`killed after this many milliseconds (default ${DEFAULT_EXEC_TIMEOUT_MS})`),
  env: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(65_536))
    .optional()
    .describe('extra environment variables'),
  stdin: z.string().max(1024 * 1024).optional().describe('text written to its standard input'),
};
const pathInput = z.string().min(1).max(4096);
const encoding = z.enum(['utf8', 'base64']).default('utf8');

const text = (value: string): CallToolResult['content'][number] => ({ type: 'text', text: value });

/** A failure the caller should read (confinement, a missing file...) as a tool error. */
function toolError(error: unknown): CallToolResult {
  const known = fileError(error);
  if (known instanceof ApiError) return { content: [text(`${known.code}: ${known.detail}`)], isError: true };
  throw error;
}

function describeExit(result: RunResult): string {
  const how =
    result.spawnError !== undefined ? `could not start: ${result.spawnError}`
    : result.timedOut ? 'timed out and was killed'
    : result.aborted ? 'was cancelled and killed'
    : result.signal ? `was killed by ${result.signal}`
    : `exited with code ${result.exitCode}`;
  const parts = [`the command ${how} after ${result.durationMs} ms${result.truncated ? ' (output truncated)' : ''}`];
  if (result.stdout) parts.push(`--- stdout ---\n${result.stdout}`);
  if (result.stderr) parts.push(`--- stderr ---\n${result.stderr}`);
  return parts.join('\n');
}

/** A server with the agent's four tools, for one request. */
function toolServer(options: AgentMcpOptions, log: FastifyBaseLogger): McpServer {
  const { root, maxOutputBytes } = options;
  const server = new McpServer({ name: 'agentgate-reference-agent', version: '0.1.0' }, { jsonSchemaValidator: sharedSchemaValidator() });

  server.registerTool(
    'exec',
    {
      title: 'Run a command',
      description:
        'Runs a program in the workspace (no shell) and returns its exit code, stdout and stderr (each capped). ' +
        'With a progress token, output is streamed as progress notifications while it runs.',
      inputSchema: execInput,
    },
    async (args, extra: Extra) => {
      let cwd: string;
      try {
        cwd = await directory(root, args.cwd ?? '.', 'cwd');
      } catch (error) {
        return toolError(error);
      }
      const progressToken = extra._meta?.progressToken;
      const streamOutput = progressToken === undefined ? undefined : outputAsProgress(extra, progressToken, maxOutputBytes);
      const result = await runProcess({
        command: args.command,
        args: args.args,
        cwd,
        env: execEnv(root, args.env),
        stdin: args.stdin,
        timeoutMs: args.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
        maxOutputBytes,
        signal: extra.signal,
        ...(streamOutput ? { onOutput: streamOutput } : {}),
      });
      const fields = { tool: 'exec', command: args.command, exitCode: result.exitCode, signal: result.signal, timedOut: result.timedOut, ms: result.durationMs };
      // The line a caller's cancel leaves behind: the command was killed, not left running.
      if (result.aborted) log.info(fields, 'mcp exec aborted');
      else log.info(fields, 'mcp exec finished');
      const { stdout, stderr, ...exit } = result;
      return {
        content: [text(describeExit(result))],
        structuredContent: { ...exit, stdout, stderr },
        isError: result.exitCode !== 0 || result.timedOut || result.aborted || result.spawnError !== undefined,
      };
    },
  );

  server.registerTool(
    'read_file',
    {
      title: 'Read a file',
      description: `Returns a file of the workspace (a path relative to its root), as UTF-8 text or base64; at most ${maxOutputBytes} bytes.`,
      inputSchema: { path: pathInput.describe('the file, relative to the workspace root'), encoding },
      annotations: { readOnlyHint: true },
    },
    async (args) => {
      try {
        const { file, size } = await readableFile(root, args.path);
        if (size > maxOutputBytes) {
          return { content: [text(`the file is ${size} bytes, more than the ${maxOutputBytes} bytes read_file returns`)], isError: true };
        }
        const data = await readFile(file);
        return { content: [text(data.toString(args.encoding))], structuredContent: { path: path.relative(root, file), bytes: data.length } };
      } catch (error) {
        return toolError(error);
      }
    },
  );

  server.registerTool(
    'write_file',
    {
      title: 'Write a file',
      description: 'Creates or replaces a file of the workspace (its directory must exist); the file appears whole or not at all.',
      inputSchema: {
        path: pathInput.describe('the file, relative to the workspace root'),
        content: z.string().describe('the new content, as UTF-8 text or base64'),
        encoding,
      },
    },
    async (args) => {
      try {
        const file = await writableFile(root, args.path);
        const bytes = await writeAtomically(file, Buffer.from(args.content, args.encoding), options.maxUploadBytes);
        const relative = path.relative(root, file);
        return { content: [text(`wrote ${bytes} bytes to ${relative}`)], structuredContent: { path: relative, bytes } };
      } catch (error) {
        return toolError(error);
      }
    },
  );

  server.registerTool(
    'list_directory',
    {
      title: 'List a directory',
      description: `Lists a directory of the workspace: each entry's name, type and size (at most ${MAX_DIRECTORY_ENTRIES} entries).`,
      inputSchema: { path: pathInput.default('.').describe('the directory, relative to the workspace root (default: the root)') },
      annotations: { readOnlyHint: true },
    },
    async (args) => {
      try {
        const dir = await directory(root, args.path);
        const names = (await readdir(dir)).sort();
        const shown = names.slice(0, MAX_DIRECTORY_ENTRIES);
        const entries = await Promise.all(
          shown.map(async (name) => {
            const info = await lstat(path.join(dir, name)).catch(() => undefined);
            const type =
              info === undefined ? 'gone'
              : info.isDirectory() ? 'directory'
              : info.isFile() ? 'file'
              : info.isSymbolicLink() ? 'symlink'
              : 'other';
            return { name, type, ...(info?.isFile() ? { size: info.size } : {}) };
          }),
        );
        const truncated = names.length > shown.length;
        const lines = entries.map((e) => (e.type === 'directory' ? `${e.name}/` : e.size === undefined ? `${e.name} (${e.type})` : `${e.name} (${e.size} bytes)`));
        if (truncated) lines.push(`... and ${names.length - shown.length} more`);
        return {
          content: [text(lines.length > 0 ? lines.join('\n') : '(empty directory)')],
          structuredContent: { path: path.relative(root, dir) || '.', entries, truncated },
        };
      } catch (error) {
        return toolError(error);
      }
    },
  );
  return server;
}

/**
 * Streams a command's output as progress notifications (progress: bytes so far), decoded per
 * stream so that a character split between two chunks arrives whole. Past `limit` bytes only
 * one more notification says the rest is not streamed: a flood of output must not pile up in
 * the response.
 */
function outputAsProgress(extra: Extra, progressToken: string | number, limit: number) {
  const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  let sent = 0;
  let cut = false;
  const notify = (message: string, stream: 'stdout' | 'stderr') =>
    extra
      .sendNotification({
        method: 'notifications/progress',
        params: { progressToken, progress: sent, message, _meta: { 'agentgate/stream': stream } },
      })
      .catch(() => undefined);
  return (stream: 'stdout' | 'stderr', chunk: Buffer): undefined => {
    if (cut) return undefined;
    sent += chunk.length;
    if (sent > limit) {
      cut = true;
      void notify(`(output past ${limit} bytes is not streamed; the result holds what was kept)`, stream);
      return undefined;
    }
    const message = decoders[stream].write(chunk);
    if (message) void notify(message, stream);
    return undefined;
  };
}

/**
 * The largest MCP request: the gate's AGENTGATE_BODY_LIMIT_BYTES default (10 MiB), plus room for
 * the gate's own JSON-RPC envelope, so that whatever a gate lets through by default reaches the
 * tool (write_file's content above all) rather than a 413 here.
 */
export const MCP_BODY_LIMIT_BYTES = 10 * 1024 * 1024 + 64 * 1024;

/** How long an answer waits for a gate that takes no bytes of it before the response is cut. */
const DRAIN_TIMEOUT_MS = 60_000;

/** POST /mcp, and the 405 that GET and DELETE get from a stateless server. */
export const registerMcp: FastifyPluginAsync<AgentMcpOptions> = async (app, options) => {
  parseMcpBodies(app);
  app.post('/mcp', { bodyLimit: MCP_BODY_LIMIT_BYTES }, async (request, reply) => {
    const unreadable = unreadableBody(request.body);
    if (unreadable) return jsonRpcError(reply, 400, unreadable.code, unreadable.message);
    await serveMcpPost(request, reply, toolServer(options, request.log), request.body, { drainTimeoutMs: DRAIN_TIMEOUT_MS, log: request.log });
  });
  app.get('/mcp', async (_request, reply) => methodNotAllowed(reply, 'this server is stateless and opens no stream on GET'));
  app.delete('/mcp', async (_request, reply) => methodNotAllowed(reply, 'this server is stateless and has no session to end'));
};
