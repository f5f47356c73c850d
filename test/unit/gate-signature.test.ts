// Signature v2 (contract §4.1), the pure parts: signing, parsing and verifying a header, and the
// agent's replay memory.
import { createHmac, generateKeyPairSync, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  parseGateSignature,
  publicKeyFromRaw,
  rawPublicKey,
  signGateRequest,
  signingString,
  verifyGateSignature,
  type SignedRequest,
} from '../../src/auth/gate-signature.js';
import { GateSigningKey } from '../../src/auth/gate-signing-key.js';
import { hashToken } from '../../src/domain/tokens.js';
import { NonceCache } from '../../src/agent/nonce-cache.js';

const NOW = 1_700_000_000_000;
const AGENT = '11111111-1111-4111-8111-111111111111';
const OTHER_AGENT = '22222222-2222-4222-8222-222222222222';
const REQ: SignedRequest = { agentId: AGENT, method: 'GET', pathAndQuery: '/base/term?x=1' };
const key = GateSigningKey.generate();

function check(header: string | undefined, req: SignedRequest = REQ, nowMs = NOW, publicKey = key.publicKey): string {
  const parsed = parseGateSignature(header);
  return typeof parsed === 'string' ? parsed : verifyGateSignature(parsed, publicKey, req, nowMs);
}

describe('signGateRequest', () => {
  it('signs with Ed25519 exactly the contract string, and writes v2.<kid>.<seconds>.<nonce>.<sig>', () => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const nonce = Buffer.alloc(16, 7).toString('base64url');
    const header = signGateRequest({ kid: 'k_1-A', privateKey }, { agentId: AGENT, method: 'post', pathAndQuery: '/a?b=%20c' }, NOW + 999, nonce);
    const [version, kid, seconds, sentNonce, sig, ...rest] = header.split('.');
    expect([version, kid, seconds, sentNonce, rest.length]).toEqual(['v2', 'k_1-A', String(NOW / 1000), nonce, 0]);
    expect(sig).toMatch(/^[A-Za-z0-9_-]{86}$/);
    const message = `v2\nk_1-A\n${NOW / 1000}\n${nonce}\n${AGENT}\nPOST\n/a?b=%20c`;
    expect(signingString('k_1-A', NOW / 1000, nonce, { agentId: AGENT, method: 'post', pathAndQuery: '/a?b=%20c' })).toBe(message);
    expect(verify(null, Buffer.from(message, 'utf8'), publicKey, Buffer.from(sig!, 'base64url'))).toBe(true);
  });

  it('uses a fresh 16-byte nonce each time', () => {
    const nonces = new Set(Array.from({ length: 50 }, () => key.sign(AGENT, 'GET', '/p').split('.')[3]));
    expect(nonces.size).toBe(50);
    for (const n of nonces) expect(Buffer.from(n!, 'base64url')).toHaveLength(16);
  });

  it('refuses a kid outside 1-64 characters of [A-Za-z0-9_-]', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    for (const kid of ['', 'a.b', 'a b', 'x'.repeat(65), 'é']) {
      expect(() => signGateRequest({ kid, privateKey }, REQ), kid).toThrow();
    }
  });

  it('publishes a raw 32-byte public key that round-trips', () => {
    expect(key.publicKeyRaw).toHaveLength(32);
    expect(rawPublicKey(publicKeyFromRaw(key.publicKeyRaw)).equals(key.publicKeyRaw)).toBe(true);
    expect(JSON.stringify(key)).toBe(JSON.stringify({ kid: key.kid }));
  });
});

describe('verifyGateSignature', () => {
  it('round-trips for any agent, method, path and time within 60 s', () => {
    fc.assert(
      fc.property(
        fc.uuid(),
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
        fc.webPath(),
        fc.integer({ min: 0, max: 4_000_000_000_000 }),
        fc.integer({ min: -60_000, max: 60_000 }),
        (agentId, method, pathAndQuery, now, skew) => {
          const header = key.sign(agentId, method, pathAndQuery, now);
          const req = { agentId, method, pathAndQuery };
          expect(check(header, req, Math.floor(now / 1000) * 1000 + skew)).toBe('ok');
          expect(check(header, { ...req, pathAndQuery: `${pathAndQuery}x` }, now)).toBe('mismatch');
        },
      ),
      { numRuns: 200 },
    );
  });

  const header = key.sign(AGENT, 'GET', '/base/term?x=1', NOW);
  it.each<[string, SignedRequest, string]>([
    ['the same request', REQ, 'ok'],
    ['another agent', { ...REQ, agentId: OTHER_AGENT }, 'mismatch'],
    ['another method', { ...REQ, method: 'POST' }, 'mismatch'],
    ['another query', { ...REQ, pathAndQuery: '/base/term?x=2' }, 'mismatch'],
    ['no query', { ...REQ, pathAndQuery: '/base/term' }, 'mismatch'],
    ['another path', { ...REQ, pathAndQuery: '/term?x=1' }, 'mismatch'],
  ])('against %s: %s', (_name, req, expected) => {
    expect(check(header, req)).toBe(expected);
  });

  it('refuses another key pair, a tampered signature, time, nonce or kid', () => {
    expect(check(header, REQ, NOW, GateSigningKey.generate().publicKey)).toBe('mismatch');
    const [, kid, seconds, nonce, sig] = header.split('.') as [string, string, string, string, string];
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    expect(check(`v2.${kid}.${seconds}.${nonce}.${flip(sig, 0)}`)).toBe('mismatch');
    expect(check(`v2.${kid}.${Number(seconds) + 1}.${nonce}.${sig}`)).toBe('mismatch');
    expect(check(`v2.${kid}.${seconds}.${flip(nonce, 0)}.${sig}`)).toBe('mismatch');
    expect(check(`v2.${kid}x.${seconds}.${nonce}.${sig}`)).toBe('mismatch');
  });

  it('refuses a v1 HMAC made from the stored token hash: it is not a v2 header at all', () => {
    const seconds = Math.floor(NOW / 1000);
    const mac = createHmac('sha256', hashToken('agagt_token')).update(`${seconds}\nGET\n/base/term?x=1`).digest('hex');
    expect(check(`v1.${seconds}.${mac}`)).toBe('malformed');
  });

  it('accepts a time within 60 s either way and refuses one outside as expired', () => {
    for (const skew of [0, 1, 59_999, 60_000, -1, -60_000]) expect(check(header, REQ, NOW + skew), String(skew)).toBe('ok');
    for (const skew of [60_001, 61_000, 3_600_000, -60_001, -3_600_000]) expect(check(header, REQ, NOW + skew), String(skew)).toBe('expired');
  });

  it('answers missing or malformed for headers that are not v2.<kid>.<seconds>.<nonce>.<sig>', () => {
    const [, kid, seconds, nonce, sig] = header.split('.') as [string, string, string, string, string];
    expect(check(undefined)).toBe('missing');
    expect(check('')).toBe('missing');
    // The last character of 16 bytes in base64url carries 2 bits (A, Q, g or w): the character
    // after it decodes to the same bytes but is not how they are written.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const nonCanonical = nonce.slice(0, 21) + alphabet[alphabet.indexOf(nonce[21]!) + 1]!;
    for (const bad of [
      `V2.${kid}.${seconds}.${nonce}.${sig}`,
      `v1.${kid}.${seconds}.${nonce}.${sig}`,
      `v2.${seconds}.${nonce}.${sig}`,
      `v2..${seconds}.${nonce}.${sig}`,
      `v2.${'k'.repeat(65)}.${seconds}.${nonce}.${sig}`,
      `v2.${kid}.-${seconds}.${nonce}.${sig}`,
      `v2.${kid}.${seconds}.${nonce}=.${sig}`,
      `v2.${kid}.${seconds}.${nonce.slice(1)}.${sig}`,
      `v2.${kid}.${seconds}.${nonCanonical}.${sig}`,
      `v2.${kid}.${seconds}.${nonce}.${sig.slice(1)}`,
      `v2.${kid}.${seconds}.${nonce}.${sig}==`,
      `v2.${kid}.${seconds}.${nonce}.${sig}.x`,
      ` ${header}`,
      `${header}\n`,
      'Bearer x',
    ]) {
      expect(check(bad), bad).toBe('malformed');
    }
  });
});

describe('NonceCache', () => {
  it.each<[string, Array<[string, number]>, string[]]>([
    ['a new nonce, then the same one', [['a', 0], ['a', 1_000]], ['new', 'seen']],
    ['the same one 119 s later', [['a', 0], ['a', 119_999]], ['new', 'seen']],
    ['the same one after 120 s', [['a', 0], ['a', 120_000]], ['new', 'new']],
    ['two different nonces', [['a', 0], ['b', 0]], ['new', 'new']],
  ])('%s', (_name, steps, expected) => {
    const cache = new NonceCache();
    expect(steps.map(([nonce, at]) => cache.remember(nonce, NOW + at))).toEqual(expected);
  });

  it('is bounded: expired entries go, and a full cache refuses rather than forgets', () => {
    const cache = new NonceCache({ maxEntries: 3, retentionMs: 1_000 });
    expect(['a', 'b', 'c', 'd'].map((n) => cache.remember(n, NOW))).toEqual(['new', 'new', 'new', 'full']);
    expect(cache.remember('a', NOW + 500)).toBe('seen');
    expect(cache.remember('d', NOW + 1_000)).toBe('new');
    expect(cache.size).toBe(1);
  });
});
