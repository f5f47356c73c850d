// Which database errors mean "the database is unavailable" (transient, 503) rather than a bug:
// told apart by code only (ours, Node's errno, PostgreSQL's SQLSTATE), never by message.
import { apiCodeOfError } from '../domain/failures.js';

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN']);

export function isDatabaseUnavailable(error: unknown): boolean {
  if (apiCodeOfError(error) === 'DATABASE_UNAVAILABLE') return true;
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  if (NETWORK_CODES.has(code)) return true;
  // 08: connection exception; 57P0x: shutdown / cannot connect now; 57014: statement timeout;
  // 53300: too many connections.
  return code.startsWith('08') || code.startsWith('57P') || code === '57014' || code === '53300';
}
