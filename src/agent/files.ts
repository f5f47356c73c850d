// The reference agent's file access, shared by its HTTP file routes and its MCP tools: every
// path resolved inside --root (confine.ts), writes made beside the target and renamed into
// place so that readers never see half a file, and failures as catalogue errors.
import { createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiError } from '../domain/errors.js';
import { OutsideRoot, resolveInRoot } from './confine.js';

/** A confinement or file-system failure as the error the caller reads; other errors as they are. */
export function fileError(error: unknown): unknown {
  if (error instanceof ApiError) return error;
  if (error instanceof OutsideRoot) return new ApiError('FORBIDDEN', error.message);
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new ApiError('NOT_FOUND', 'no such file or directory');
  if (code === 'ENOTDIR' || code === 'EISDIR') return new ApiError('INVALID_REQUEST', 'not a regular file');
  return error;
}

/** Runs `fn`, turning confinement and file-system failures into catalogue errors. */
export async function confined<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw fileError(error);
  }
}

/** The real path and size of an existing regular file inside the root. */
export function readableFile(root: string, requested: string): Promise<{ file: string; size: number }> {
  return confined(async () => {
    const file = await resolveInRoot(root, requested);
    const info = await stat(file);
    if (!info.isFile()) throw new ApiError('INVALID_REQUEST', 'not a regular file');
    return { file, size: info.size };
  });
}

/** The real path of a file to write inside the root: never the root itself nor a directory. */
export function writableFile(root: string, requested: string): Promise<string> {
  return confined(async () => {
    const file = await resolveInRoot(root, requested, { mayNotExist: true });
    if (file === root || (await stat(file).catch(() => undefined))?.isDirectory()) {
      throw new ApiError('INVALID_REQUEST', 'the path names a directory');
    }
    return file;
  });
}

/** The real path of an existing directory inside the root. */
export function directory(root: string, requested: string, what = 'the path'): Promise<string> {
  return confined(async () => {
    const dir = await resolveInRoot(root, requested);
    if (!(await stat(dir)).isDirectory()) throw new ApiError('INVALID_REQUEST', `${what} is not a directory`);
    return dir;
  });
}

/**
 * Writes `source` to `file` (from writableFile) through a temporary file beside it, renamed into
 * place once complete; more than `limit` bytes is PAYLOAD_TOO_LARGE and leaves nothing behind.
 * Returns the bytes written.
 */
export async function writeAtomically(file: string, source: Readable | Buffer, limit: number): Promise<number> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.part`);
  let written = 0;
  try {
    await pipeline(
      Buffer.isBuffer(source) ? Readable.from([source]) : source,
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          written += chunk.length;
          if (written > limit) throw new ApiError('PAYLOAD_TOO_LARGE', `files are limited to ${limit} bytes`);
          yield chunk;
        }
      },
      createWriteStream(temp, { flags: 'wx', mode: 0o644 }),
    );
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw fileError(error);
  }
  return written;
}
