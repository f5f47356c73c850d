// Gate-to-agent request signature v2 (contract §4.1):
// `x-agentgate-auth: v2.<kid>.<unix seconds>.<nonce>.<signature>`, an Ed25519 signature over
// `v2\n<kid>\n<unix seconds>\n<nonce>\n<agent id>\n<METHOD>\n<path and query as sent to the agent>`.
// Only the gate process holding the private key can sign; the agent id in the signed string
// keeps a request for one agent from being accepted by another. Pure functions: keys, clock
// and nonce are the caller's.
//
// Headers and body are not signed, the W3C trace context (`traceparent`, `tracestate`) the gate
// sends included, on purpose: it only says which trace the agent's spans join and decides nothing
// on the agent, which treats it as untrusted input as W3C asks of every receiver. A replay cannot
// carry another one, since a replayed request is refused (nonce seen, time window); and whoever
// can rewrite a request in flight can rewrite its body as well, which only TLS to the agent
// prevents. Signing it would protect nothing more, and would tie every agent's check to it.
import { createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-agentgate-auth';
/** How far apart the gate's and the agent's clocks may be. */
export const SIGNATURE_WINDOW_SECONDS = 60;
/** How long an agent remembers a nonce it accepted. */
export const NONCE_RETENTION_SECONDS = 120;

export const KID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
// 16 nonce bytes are 22 base64url characters, a 64-byte Ed25519 signature 86.
const HEADER_PATTERN = /^v2\.([A-Za-z0-9_-]{1,64})\.(\d{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{86})$/;

/** What a signature binds: the request as it goes on the wire to one agent. */
export interface SignedRequest {
  agentId: string;
  method: string;
  pathAndQuery: string;
}

export interface ParsedSignature {
  kid: string;
  seconds: number;
  /** The time as written in the header: the signature covers these characters. */
  secondsText: string;
  /** As sent (canonical base64url of 16 bytes). */
  nonce: string;
  signature: Buffer;
}

export type SignatureCheck = 'ok' | 'missing' | 'malformed' | 'unknown_key' | 'expired' | 'mismatch' | 'replayed';

export function signingString(kid: string, seconds: string | number, nonce: string, req: SignedRequest): string {
  return `v2\n${kid}\n${seconds}\n${nonce}\n${req.agentId}\n${req.method.toUpperCase()}\n${req.pathAndQuery}`;
}

export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

export function signGateRequest(
  key: { kid: string; privateKey: KeyObject },
  req: SignedRequest,
  nowMs = Date.now(),
  nonce = newNonce(),
): string {
  if (!KID_PATTERN.test(key.kid)) throw new Error('a key id is 1 to 64 characters of [A-Za-z0-9_-]');
  const seconds = Math.floor(nowMs / 1000);
  const signature = sign(null, Buffer.from(signingString(key.kid, seconds, nonce, req), 'utf8'), key.privateKey);
  return `v2.${key.kid}.${seconds}.${nonce}.${signature.toString('base64url')}`;
}

const canonical = (text: string, bytes: Buffer) => bytes.toString('base64url') === text;

/** Splits a header into its parts, or says why it cannot be one. */
export function parseGateSignature(header: string | undefined): ParsedSignature | 'missing' | 'malformed' {
  if (!header) return 'missing';
  const match = HEADER_PATTERN.exec(header);
  if (!match) return 'malformed';
  const [, kid = '', secondsText = '', nonce = '', sigText = ''] = match;
  const signature = Buffer.from(sigText, 'base64url');
  // One spelling per value: a nonce written two ways must not count as two nonces.
  if (!canonical(nonce, Buffer.from(nonce, 'base64url')) || !canonical(sigText, signature)) return 'malformed';
  return { kid, seconds: Number(secondsText), secondsText, nonce, signature };
}

export function withinWindow(seconds: number, nowMs: number): boolean {
  return Math.abs(nowMs / 1000 - seconds) <= SIGNATURE_WINDOW_SECONDS;
}

/**
 * Checks a parsed header's time and its signature, by one public key, over the request as the
 * verifier received it (its own agent id, the method, the raw path and query).
 */
export function verifyGateSignature(
  parsed: ParsedSignature,
  publicKey: KeyObject,
  req: SignedRequest,
  nowMs = Date.now(),
): 'ok' | 'expired' | 'mismatch' {
  if (!withinWindow(parsed.seconds, nowMs)) return 'expired';
  const signed = Buffer.from(signingString(parsed.kid, parsed.secondsText, parsed.nonce, req), 'utf8');
  return verify(null, signed, publicKey, parsed.signature) ? 'ok' : 'mismatch';
}

/** The public key object for the raw 32 bytes an agent learns from `GET /agent/keys`. */
export function publicKeyFromRaw(raw: Buffer): KeyObject {
  if (raw.length !== 32) throw new Error('an Ed25519 public key is 32 bytes');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

/** The raw 32 bytes of an Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Buffer {
  const { x } = key.export({ format: 'jwk' });
  if (typeof x !== 'string') throw new Error('not an Ed25519 public key');
  return Buffer.from(x, 'base64url');
}
