// This process's signing key pair (contract §4.1): made at start, the private half held in memory only.
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { rawPublicKey, signGateRequest } from './gate-signature.js';

export class GateSigningKey {
  readonly kid: string;
  /** The raw 32 bytes published in gate_signing_keys. */
  readonly publicKeyRaw: Buffer;
  readonly publicKey: KeyObject;
  readonly #privateKey: KeyObject;

  private constructor(kid: string, publicKey: KeyObject, privateKey: KeyObject) {
    this.kid = kid;
    this.publicKey = publicKey;
    this.publicKeyRaw = rawPublicKey(publicKey);
    this.#privateKey = privateKey;
  }

  static generate(): GateSigningKey {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    // Random, not derived from the key: a kid names one process's key and nothing more.
    return new GateSigningKey(randomBytes(12).toString('base64url'), publicKey, privateKey);
  }

  /** The `x-agentgate-auth` value for one request to one agent. */
  sign(agentId: string, method: string, pathAndQuery: string, nowMs = Date.now()): string {
    return signGateRequest({ kid: this.kid, privateKey: this.#privateKey }, { agentId, method, pathAndQuery }, nowMs);
  }

  // The private key stays out of logs and JSON even when the object is logged whole.
  toJSON(): { kid: string } {
    return { kid: this.kid };
  }
}
