// Checks a signature v2 header the gate sent, as an agent would (nonce aside).
import { parseGateSignature, verifyGateSignature } from '../../src/auth/gate-signature.js';
import type { GateSigningKey } from '../../src/auth/gate-signing-key.js';

export function checkGateSignature(
  key: GateSigningKey,
  header: string | string[] | undefined,
  agentId: string,
  method: string,
  pathAndQuery: string,
): string {
  const parsed = parseGateSignature(typeof header === 'string' ? header : undefined);
  if (typeof parsed === 'string') return parsed;
  if (parsed.kid !== key.kid) return 'unknown_key';
  return verifyGateSignature(parsed, key.publicKey, { agentId, method, pathAndQuery });
}
