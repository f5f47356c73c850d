// Gate-to-agent request signing (SPEC 4.1): `x-agentgate-auth: v1.<unix seconds>.<hex>`, an
// HMAC-SHA256 keyed with the raw 32 bytes of SHA-256(agent token) over
// `<unix seconds>\n<METHOD>\n<path and query as sent to the agent>`.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-agentgate-auth';
/** How far apart the gate's and the agent's clocks may be (SPEC 4.1). */
export const SIGNATURE_WINDOW_SECONDS = 60;

function mac(key: Buffer, seconds: number, method: string, pathAndQuery: string): string {
  return createHmac('sha256', key).update(`${seconds}\n${method.toUpperCase()}\n${pathAndQuery}`).digest('hex');
}

export function signAgentRequest(key: Buffer, method: string, pathAndQuery: string, nowMs = Date.now()): string {
  const seconds = Math.floor(nowMs / 1000);
  return `v1.${seconds}.${mac(key, seconds, method, pathAndQuery)}`;
}

export type SignatureCheck = 'ok' | 'missing' | 'malformed' | 'expired' | 'mismatch';

export function verifyAgentRequest(
  key: Buffer,
  header: string | undefined,
  method: string,
  pathAndQuery: string,
  nowMs = Date.now(),
): SignatureCheck {
  if (!header) return 'missing';
  const match = /^v1\.(\d{1,12})\.([0-9a-f]{64})$/.exec(header);
  if (!match) return 'malformed';
  const seconds = Number(match[1]);
  if (Math.abs(nowMs / 1000 - seconds) > SIGNATURE_WINDOW_SECONDS) return 'expired';
  const expected = Buffer.from(mac(key, seconds, method, pathAndQuery), 'hex');
  const given = Buffer.from(match[2] ?? '', 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected) ? 'ok' : 'mismatch';
}
