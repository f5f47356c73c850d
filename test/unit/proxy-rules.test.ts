// The proxy's pure rules (contract §4.1, 6): which headers cross in each direction, which paths may
// be forwarded and how the agent selector leaves the query.
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { downstreamResponseHeaders, upstreamRequestHeaders, type ForwardContext } from '../../src/proxy/headers.js';
import { checkForwardPath, MAX_DECODE_ROUNDS } from '../../src/domain/forward-path.js';
import { proxyTarget, splitAgentParam } from '../../src/proxy/target-path.js';
import { forwardedFor, trustProxyFrom } from '../../src/proxy/trust-proxy.js';
import type { IncomingMessage } from 'node:http';
import { ApiError } from '../../src/domain/errors.js';
import { canonicalTarget } from '../../src/http/request-target.js';

// ---------------------------------------------------------------------------------------------
// Headers

/** RFC 9110 section 7.6.1 and the usual proxy extras; listed here independently of the code. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];
/** The caller's credentials. */
const CREDENTIALS = ['authorization', 'cookie', 'proxy-authorization'];
/** Set by the gate alone, from the context, never copied from the caller. */
const GATE_SET = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id', 'x-agentgate-auth'];
/** Client-identity headers a caller could forge; listed here independently of the code. */
const CLIENT_IDENTITY = [
  'forwarded',
  'x-real-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'fastly-client-ip',
  'client-ip',
  'x-originating-ip',
  'x-remote-ip',
  'x-remote-addr',
];
/**
 * Forwarding headers frameworks honour (a path, a method, a host, a port), which let a caller
 * leave the agent's base path or change the signed method; listed here independently of the code.
 */
const FORWARDING = [
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-scheme',
  'x-forwarded-ssl',
  'x-forwarded-server',
  'x-forwarded-uri',
  'x-forwarded-path',
  'x-original-url',
  'x-original-uri',
  'x-rewrite-url',
  'x-http-method-override',
  'x-method-override',
  'x-http-method',
  'x-host',
];
/** Other names the caller must not control on the agent side. */
const CALLER_CONTROLLED = ['host', 'content-length', 'expect', ...CLIENT_IDENTITY, ...FORWARDING];
/** Families removed by prefix: any suffix, whatever a list names. */
const FORWARDING_FAMILY = ['x-forwarded-', 'x-original-', 'x-rewrite-', 'x-http-method', 'x-method-override', 'forwarded'];
/** W3C trace context: checked (or replaced by the gate's own), never copied blindly. */
const TRACE_CONTEXT = ['traceparent', 'tracestate'];
const RESERVED = new Set([...HOP_BY_HOP, ...CREDENTIALS, ...GATE_SET, ...CALLER_CONTROLLED, ...TRACE_CONTEXT]);
/** Whether a (lower-case) name is one the rules remove, by name or by family. */
const reserved = (lower: string) => RESERVED.has(lower) || lower.startsWith('x-agentgate-') || FORWARDING_FAMILY.some((f) => lower.startsWith(f));

/** The same name in a random mix of upper and lower case. */
const mixedCase = (name: string) =>
  fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((upper) =>
    [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''),
  );

const headerValue = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,30}[\x21-\x7e])?$/);
const valueOrList = fc.oneof(headerValue, fc.array(headerValue, { minLength: 1, maxLength: 3 }));

/** A name no rule touches (unless a Connection header names it). */
const otherName = fc
  .stringMatching(/^[a-z][a-z0-9-]{0,15}$/)
  .filter((n) => !RESERVED.has(n) && !n.startsWith('x-agentgate-') && !FORWARDING_FAMILY.some((f) => n.startsWith(f)) && !n.startsWith('x-host') && !n.includes('client-ip') && !/^x-(real|remote|envoy|appengine|proxyuser|originating)/.test(n) && !/^(true-client|cf-connecting|fastly-client|akamai-client)/.test(n));

/** A header of a forwarding family, with a suffix no list names. */
const familyName = fc
  .tuple(fc.constantFrom(...FORWARDING_FAMILY), fc.stringMatching(/^[a-z0-9-]{0,10}$/))
  .chain(([family, suffix]) => mixedCase(`${family}${suffix}`));

const agentgateName = fc
  .stringMatching(/^[a-z0-9-]{0,12}$/)
  .chain((suffix) => mixedCase(`x-agentgate-${suffix}`));

const strippedName = fc.oneof(fc.constantFrom(...HOP_BY_HOP, ...CREDENTIALS, ...GATE_SET, ...CALLER_CONTROLLED).chain(mixedCase), agentgateName, familyName);

/** As parsed headers, but a Connection header may also come as a list (as the rules accept). */
type Headers = Record<string, string | string[] | undefined>;

interface HeaderSet {
  headers: Headers;
  /** Lower-case names of the headers no rule removes (before Connection is applied). */
  others: Map<string, string | string[]>;
  /** Lower-case names the Connection header lists. */
  named: Set<string>;
}

/**
 * Random header sets: names unique once lower-cased (as a parsed request's are), some of the
 * other names listed in a Connection header with random case and spacing.
 */
function headerSet(extraOthers: fc.Arbitrary<[string, string | string[]]>[] = []): fc.Arbitrary<HeaderSet> {
  const entry = fc.oneof(
    fc.tuple(otherName.chain(mixedCase), valueOrList),
    fc.tuple(strippedName, valueOrList),
    ...extraOthers,
  );
  return fc
    .record({
      entries: fc.uniqueArray(entry, { maxLength: 14, selector: ([name]) => name.toLowerCase() }),
      picks: fc.array(fc.nat(), { maxLength: 4 }),
      strangers: fc.array(otherName, { maxLength: 2 }),
      spacing: fc.array(fc.constantFrom(',', ', ', ' ,', ' , ', ',,'), { minLength: 8, maxLength: 8 }),
      connectionAsList: fc.boolean(),
      withConnection: fc.boolean(),
    })
    .chain((r) => {
      const entries = r.entries.filter(([name]) => name.toLowerCase() !== 'connection');
      const candidates = entries.map(([name]) => name.toLowerCase()).filter((n) => !reserved(n));
      const named = [
        ...r.picks.filter(() => candidates.length > 0).map((p) => candidates[p % candidates.length]!),
        ...r.strangers,
      ];
      return fc.tuple(fc.constant({ ...r, entries, named }), fc.tuple(...named.map(mixedCase)));
    })
    .map(([r, namedCased]) => {
      const headers: Headers = {};
      for (const [name, value] of r.entries) headers[name] = value;
      const tokens = ['keep-alive', ...namedCased];
      if (r.withConnection) {
        headers.connection = r.connectionAsList
          ? tokens.map((tok) => ` ${tok} `)
          : tokens.reduce((acc, tok, i) => (i === 0 ? tok : `${acc}${r.spacing[i % r.spacing.length]}${tok}`), '');
      }
      const named = new Set(r.withConnection ? ['keep-alive', ...r.named] : []);
      const others = new Map<string, string | string[]>();
      for (const [name, value] of r.entries) {
        const lower = name.toLowerCase();
        if (!reserved(lower)) others.set(lower, value);
      }
      return { headers, others, named };
    });
}

const forwardContext: fc.Arbitrary<ForwardContext> = fc.record({
  clientIp: fc.oneof(fc.ipV4(), fc.ipV6()),
  proto: fc.constantFrom('http' as const, 'https' as const),
  host: fc.option(fc.stringMatching(/^[a-z0-9.-]{1,20}(:[0-9]{1,5})?$/), { nil: undefined }),
  requestId: fc.uuid(),
  signature: fc.stringMatching(/^v1\.[0-9]{10}\.[0-9a-f]{64}$/),
  contentLength: fc.option(fc.nat(), { nil: undefined }),
});

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop, Connection-named, credential and x-agentgate-* headers; sets the forwarding ones from the context', () => {
    fc.assert(
      fc.property(headerSet(), forwardContext, ({ headers, others, named }, ctx) => {
        const out = upstreamRequestHeaders(headers, ctx);
        const keys = Object.keys(out);
        for (const key of keys) {
          expect(key).toBe(key.toLowerCase());
          expect(HOP_BY_HOP).not.toContain(key);
          expect(named.has(key)).toBe(false);
          expect(['authorization', 'cookie', 'host', 'expect', ...CLIENT_IDENTITY, ...FORWARDING]).not.toContain(key);
          if (FORWARDING_FAMILY.some((f) => key.startsWith(f))) expect(GATE_SET).toContain(key);
          if (key.startsWith('x-agentgate-')) expect(key).toBe('x-agentgate-auth');
        }
        expect(out['x-agentgate-auth']).toBe(ctx.signature);
        expect(out['x-forwarded-for']).toBe(ctx.clientIp);
        expect(out['x-forwarded-proto']).toBe(ctx.proto);
        expect(out['x-forwarded-host']).toBe(ctx.host);
        expect(out['x-request-id']).toBe(ctx.requestId);
        expect(out['content-length']).toBe(ctx.contentLength === undefined ? undefined : String(ctx.contentLength));
        // Every other header passes unchanged, and nothing else appears.
        const expected = new Map([...others].filter(([name]) => !named.has(name)));
        for (const [name, value] of expected) expect(out[name]).toEqual(value);
        const gateKeys = GATE_SET.filter((k) => out[k] !== undefined).concat(out['content-length'] === undefined ? [] : ['content-length']);
        expect(new Set(keys)).toEqual(new Set([...expected.keys(), ...gateKeys]));
      }),
      { numRuns: 500 },
    );
  });

  it.each(FORWARDING)('never forwards the caller\'s %s, in any case', (name) => {
    const ctx: ForwardContext = { clientIp: '10.0.0.7', proto: 'http', host: undefined, requestId: 'rid', signature: 'v2.sig' };
    for (const spelled of [name, name.toUpperCase()]) {
      const out = upstreamRequestHeaders({ [spelled]: '/admin', 'x-kept': 'yes' }, ctx);
      expect(Object.keys(out).map((k) => k.toLowerCase())).not.toContain(name);
      expect(out['x-kept']).toBe('yes');
    }
  });

  it('never takes the forwarding headers or the signature from the caller', () => {
    const ctx: ForwardContext = { clientIp: '10.0.0.7', proto: 'https', host: undefined, requestId: 'rid-gate', signature: 'v2.sig' };
    const out = upstreamRequestHeaders(
      {
        'x-forwarded-for': '1.2.3.4',
        'x-forwarded-proto': 'gopher',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-prefix': '/admin',
        'x-request-id': 'rid-caller',
        'x-agentgate-auth': 'v2.forged',
        'X-AgentGate-Agent': 'main',
        forwarded: 'for=1.2.3.4',
        'X-Real-IP': '1.2.3.4',
        'True-Client-IP': '1.2.3.4',
        'CF-Connecting-IP': '1.2.3.4',
        'X-Client-IP': '1.2.3.4',
        'X-Cluster-Client-IP': '1.2.3.4',
        'Fastly-Client-IP': '1.2.3.4',
        host: 'gate.example',
        'content-length': '99',
        authorization: 'Bearer secret',
        cookie: 'a=b',
        'proxy-authorization': 'Basic x',
        connection: 'close, X-Private',
        'x-private': 'hidden',
        'x-kept': 'yes',
      },
      ctx,
    );
    expect(out).toEqual({
      'x-forwarded-for': '10.0.0.7',
      'x-forwarded-proto': 'https',
      'x-request-id': 'rid-gate',
      'x-agentgate-auth': 'v2.sig',
      'x-kept': 'yes',
    });
  });
});

describe('upstreamRequestHeaders: W3C trace context', () => {
  const ctx: ForwardContext = { clientIp: '10.0.0.7', proto: 'http', host: undefined, requestId: 'rid', signature: 'v2.sig' };
  const caller = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const gate = '00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01';

  it('tracing off: the caller’s well-formed traceparent and tracestate pass unchanged', () => {
    const out = upstreamRequestHeaders({ traceparent: caller, tracestate: 'rojo=1,congo=2' }, ctx);
    expect(out.traceparent).toBe(caller);
    expect(out.tracestate).toBe('rojo=1,congo=2');
  });

  it('tracing off: a malformed traceparent is dropped with its tracestate; a malformed tracestate alone', () => {
    for (const bad of ['00-xyz', caller.toUpperCase(), `${caller}, ${caller}`]) {
      // Lower-case keys, as Node delivers them.
      const out = upstreamRequestHeaders({ traceparent: bad, tracestate: 'rojo=1' }, ctx);
      expect(out).not.toHaveProperty('traceparent');
      expect(out).not.toHaveProperty('tracestate');
      expect(Object.keys(out).map((k) => k.toLowerCase())).not.toContain('traceparent');
    }
    const out = upstreamRequestHeaders({ traceparent: caller, tracestate: 'Rojo=1' }, ctx);
    expect(out.traceparent).toBe(caller);
    expect(out).not.toHaveProperty('tracestate');
    expect(upstreamRequestHeaders({ tracestate: 'rojo=1' }, ctx)).not.toHaveProperty('tracestate');
  });

  it('tracing on: the gate’s own context replaces the caller’s, whatever the caller sent', () => {
    const out = upstreamRequestHeaders({ traceparent: caller, tracestate: 'rojo=1' }, { ...ctx, trace: { traceparent: gate } });
    expect(out.traceparent).toBe(gate);
    expect(out).not.toHaveProperty('tracestate');
    const both = upstreamRequestHeaders({ traceparent: 'junk' }, { ...ctx, trace: { traceparent: gate, tracestate: 'rojo=1' } });
    expect(both).toMatchObject({ traceparent: gate, tracestate: 'rojo=1' });
  });
});

describe('forwardedFor (AGENTGATE_TRUST_PROXY)', () => {
  const request = (peer: string, headers: Record<string, string>) => ({ socket: { remoteAddress: peer }, headers }) as unknown as IncomingMessage;
  const claims = { host: 'gate.example', 'x-forwarded-for': '203.0.113.9', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' };

  it('believes nothing from a peer that is not a trusted proxy, and passes no host on', () => {
    for (const trust of [trustProxyFrom([]), trustProxyFrom(['10.0.0.0/8', '::1'])]) {
      expect(forwardedFor(request('192.0.2.7', claims), trust)).toEqual({ clientIp: '192.0.2.7', proto: 'http', host: undefined });
    }
  });

  it('from a trusted proxy, takes the first untrusted hop from the right, its protocol and host', () => {
    const trust = trustProxyFrom(['10.0.0.0/8', '::1']);
    expect(forwardedFor(request('10.9.9.9', { ...claims, 'x-forwarded-for': '1.1.1.1, 203.0.113.9, 10.0.0.2' }), trust)).toEqual({
      clientIp: '203.0.113.9',
      proto: 'https',
      host: 'evil.example',
    });
    expect(forwardedFor(request('::ffff:10.0.0.1', { host: 'gate.example' }), trust)).toEqual({ clientIp: '::ffff:10.0.0.1', proto: 'http', host: 'gate.example' });
    expect(forwardedFor(request('::1', { host: 'gate.example', 'x-forwarded-proto': 'gopher' }), trust).proto).toBe('http');
  });
});

describe('downstreamResponseHeaders', () => {
  const usual = [
    fc.tuple(fc.constantFrom('set-cookie', 'Set-Cookie').chain(mixedCase), fc.array(headerValue, { minLength: 1, maxLength: 3 })),
    fc.tuple(fc.constantFrom('content-type', 'content-length', 'cache-control', 'etag', 'location', 'www-authenticate').chain(mixedCase), headerValue),
  ] as fc.Arbitrary<[string, string | string[]]>[];

  it('drops hop-by-hop, Connection-named, set-cookie and x-agentgate-* headers, keeps the rest unchanged, marks the response', () => {
    fc.assert(
      fc.property(headerSet(usual), ({ headers, named }) => {
        const out = downstreamResponseHeaders(headers);
        for (const key of Object.keys(out)) {
          expect(key).toBe(key.toLowerCase());
          expect(HOP_BY_HOP).not.toContain(key);
          expect(named.has(key)).toBe(false);
          if (key.startsWith('x-agentgate-')) expect(key).toBe('x-agentgate-upstream');
        }
        expect(out['x-agentgate-upstream']).toBe('agent');
        const kept = Object.entries(headers).filter(([name]) => {
          const lower = name.toLowerCase();
          return !HOP_BY_HOP.includes(lower) && !named.has(lower) && lower !== 'set-cookie' && !lower.startsWith('x-agentgate-');
        });
        for (const [name, value] of kept) expect(out[name.toLowerCase()]).toEqual(value);
        expect(Object.keys(out)).toHaveLength(kept.length + 1);
      }),
      { numRuns: 500 },
    );
  });

  it('drops set-cookie (a tool call sets no cookie on the chat server); keeps content-type and content-length as sent', () => {
    const out = downstreamResponseHeaders({
      'set-cookie': ['a=1; Path=/', 'b=2'],
      'content-type': 'application/json; charset=utf-8',
      'content-length': '42',
      'transfer-encoding': 'chunked',
      'Keep-Alive': 'timeout=5',
      connection: 'keep-alive, X-Hop',
      'x-hop': '1',
      'x-agentgate-upstream': 'spoofed',
      'x-agentgate-degraded': 'database',
    });
    expect(out).toEqual({
      'content-type': 'application/json; charset=utf-8',
      'content-length': '42',
      'x-agentgate-upstream': 'agent',
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Paths

describe('checkForwardPath', () => {
  it.each(['/', '/a/b', '/a/', '/a%20b', '/a.b', '/...', '/a..b', '/.well-known/x', '/%E2%82%AC', '/a;b=c', '/%2e%2e%2e', '/..a', '/a./b.'])(
    'accepts %s',
    (path) => {
      expect(checkForwardPath(path)).toEqual({ ok: true });
    },
  );

  it.each([
    // dot segments, plain and encoded, in any case and position
    '/.',
    '/..',
    '/./',
    '/../',
    '/a/.',
    '/a/..',
    '/a/./b',
    '/a/../b',
    '/%2e',
    '/%2E',
    '/%2e%2e',
    '/%2E%2E',
    '/%2e%2E',
    '/.%2e',
    '/%2e.',
    '/a/%2e%2e/b',
    // double, triple and quadruple encoding
    '/%252e',
    '/%252e%252e',
    '/%252E%252E',
    '/.%252e',
    '/%25252e%25252e',
    '/%2525252e%2525252e',
    // path parameters that servers strip
    '/..;',
    '/..;/x',
    '/..;a=b/x',
    '/.;jsessionid=1/x',
    '/%2e%2e;x/y',
    '/%252e%252e;/y',
    '/a/..;jsessionid=0',
    // encoded slashes and backslashes, at any depth
    '/a%2fb',
    '/a%2Fb',
    '/%2f',
    '/%2F..',
    '/a%252fb',
    '/a%252Fb',
    '/a%25252fb',
    '/a%5cb',
    '/a%5Cb',
    '/a%255cb',
    '/%5c..%5c',
    '/a\\b',
    '/\\',
    '/..\\x',
    // empty segments
    '//',
    '//a',
    '/a//b',
    '/a//',
    // NUL and control characters, raw or encoded
    '/%00',
    '/a%00b',
    '/a%2500',
    '/a%0ab',
    '/a%0D%0A',
    '/a%09',
    '/a%7f',
    '/a\u0000b',
    '/a\u0001b',
    '/a\tb',
    '/a\u007fb',
    // malformed percent-encoding
    '/%zz',
    '/%',
    '/a%',
    '/a%2',
    '/%g0',
    '/%E2%82',
    '/%C0%AE',
    '/a%25zz',
    // not a path
    '',
    'a/b',
  ])('refuses %j', (path) => {
    const check = checkForwardPath(path);
    expect(check.ok).toBe(false);
    if (!check.ok) expect(check.reason.length).toBeGreaterThan(0);
  });

  /** Percent-encodes one character (UTF-8), in upper- or lower-case hex. */
  const pct = (c: string, upper: boolean) =>
    [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).map((h) => (upper ? h.toUpperCase() : h)).join('');
  const RAW_SAFE = /^[A-Za-z0-9._~;=!$&'()*+,:@-]$/;

  /**
   * A raw segment that decodes to `decoded`: each character kept or encoded at random, then the
   * whole encoded again `depth` more times (each pass encoding every `%`, and maybe more).
   */
  function encodedSegment(decoded: fc.Arbitrary<string>): fc.Arbitrary<string> {
    return decoded.chain((s) =>
      fc
        .record({
          choices: fc.array(fc.tuple(fc.boolean(), fc.boolean()), { minLength: [...s].length, maxLength: [...s].length }),
          depth: fc.integer({ min: 0, max: 3 }),
          upper: fc.boolean(),
        })
        .map(({ choices, depth, upper }) => {
          let raw = [...s]
            .map((c, i) => {
              const [encode, up] = choices[i]!;
              return RAW_SAFE.test(c) && !encode ? c : pct(c, up);
            })
            .join('');
          for (let d = 0; d < depth; d++) raw = raw.replaceAll('%', pct('%', upper));
          return raw;
        }),
    );
  }

  /** Decodes until nothing changes (at most 4 levels); undefined when malformed. */
  function decodeAll(segment: string): string | undefined {
    let current = segment;
    for (let i = 0; i < 4; i++) {
      let next: string;
      try {
        next = decodeURIComponent(current);
      } catch {
        return undefined;
      }
      if (next === current) break;
      current = next;
    }
    return current;
  }

  const filler = fc.stringMatching(/^[A-Za-z0-9 ._~%;=@€-]{0,8}$/);
  const dotty = fc
    .tuple(fc.constantFrom('.', '..'), fc.option(fc.stringMatching(/^;[A-Za-z0-9=._-]{0,8}$/), { nil: '' }))
    .map(([dots, params]) => dots + params);
  const slashy = fc.tuple(filler, fc.constantFrom('/', '\\'), filler).map((parts) => parts.join(''));
  const anySegment = fc.oneof(encodedSegment(dotty), encodedSegment(slashy), encodedSegment(filler), filler);

  it('refuses every path with a segment that decodes to a dot segment, a slash or a backslash', () => {
    fc.assert(
      fc.property(fc.array(anySegment, { minLength: 1, maxLength: 6 }), (segments) => {
        const path = `/${segments.join('/')}`;
        const check = checkForwardPath(path);
        const escapes = segments.some((segment) => {
          const decoded = decodeAll(segment);
          if (decoded === undefined) return false;
          const bare = decoded.split(';')[0];
          return bare === '.' || bare === '..' || decoded.includes('/') || decoded.includes('\\');
        });
        if (escapes) expect(check.ok).toBe(false);
        if (!check.ok) expect(check.reason).toMatch(/\S/);
      }),
      { numRuns: 1000 },
    );
  });

  it('accepts every path of harmless segments, however they are encoded', () => {
    const harmless = fc
      .stringMatching(/^[A-Za-z0-9 ._~;=@€-]{1,10}$/)
      .filter((s) => !['.', '..'].includes(s.split(';')[0]!));
    fc.assert(
      fc.property(fc.array(encodedSegment(harmless), { minLength: 1, maxLength: 6 }), fc.boolean(), (segments, trailingSlash) => {
        const path = `/${segments.join('/')}${trailingSlash ? '/' : ''}`;
        expect(checkForwardPath(path)).toEqual({ ok: true });
      }),
      { numRuns: 500 },
    );
  });
});

describe('checkForwardPath: a bounded cost', () => {
  /** `s` percent-encoded `depth` times: each pass encodes every `%` again. */
  const nest = (s: string, depth: number) => {
    let raw = s;
    for (let d = 0; d < depth; d++) raw = raw.replaceAll('%', '%25');
    return raw;
  };

  it('accepts a harmless segment encoded four levels deep and refuses one encoded deeper', () => {
    expect(checkForwardPath(`/${nest('%41', 3)}`)).toEqual({ ok: true });
    for (const depth of [4, 5, 10]) {
      const check = checkForwardPath(`/${nest('%41', depth)}`);
      expect(check.ok).toBe(false);
      if (!check.ok) expect(check.reason).toMatch(/levels deep/);
    }
    // The refusal of dot segments and encoded slashes does not depend on the bound.
    expect(checkForwardPath(`/${nest('%2e%2e', 10)}`).ok).toBe(false);
    expect(checkForwardPath(`/a${nest('%2f', 10)}b`).ok).toBe(false);
  });

  it('is INVALID_REQUEST on the proxy', () => {
    const id = '6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b';
    expect(() => proxyTarget(`/workspaces/${id}/conn/${nest('%41', 6)}`, undefined)).toThrow(
      expect.objectContaining({ code: 'INVALID_REQUEST', status: 400 }) as Error,
    );
  });

  it('decodes a path of nested escapes a bounded number of times, whatever its length', () => {
    // Counts the work instead of timing it: each decode round is linear in the segment.
    const spy = vi.spyOn(globalThis, 'decodeURIComponent');
    try {
      for (const length of [100, 1_000, 8_000]) {
        const segment = `%${'25'.repeat((length - 3) / 2)}41`;
        spy.mockClear();
        expect(checkForwardPath(`/${segment}`).ok).toBe(false);
        expect(spy.mock.calls.length).toBeLessThanOrEqual(MAX_DECODE_ROUNDS + 1);
      }
      // A path of many encoded segments costs a bounded number of rounds per segment.
      spy.mockClear();
      const many = Array.from({ length: 50 }, () => nest('%41', 3)).join('/');
      expect(checkForwardPath(`/${many}`)).toEqual({ ok: true });
      expect(spy.mock.calls.length).toBeLessThanOrEqual(50 * (MAX_DECODE_ROUNDS + 1));
    } finally {
      spy.mockRestore();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Agent selection and the forwarded query

describe('splitAgentParam', () => {
  it.each([
    ['', '', []],
    ['agent=main', '', ['main']],
    ['x=1&agent=main&y=%20z', '?x=1&y=%20z', ['main']],
    ['q=a+b&agent=m&r=%2B&s=', '?q=a+b&r=%2B&s=', ['m']],
    ['b=2&a=1&agent=x&c=3', '?b=2&a=1&c=3', ['x']],
    ['x=1&x=2&agent=a&x=3', '?x=1&x=2&x=3', ['a']],
    ['a=&b&=c&&', '?a=&b&=c&&', []],
    ['%61gent=enc&k=v', '?k=v', ['enc']],
    ['agent=a&agent=b', '', ['a', 'b']],
    ['agent', '', ['']],
    ['Agent=kept&agents=kept&xagent=kept', '?Agent=kept&agents=kept&xagent=kept', []],
    ['x=%zz&agent=a', '?x=%zz', ['a']],
    ['%zz=1&k=%E2%82%AC', '?%zz=1&k=%E2%82%AC', []],
    ['path=/a/../b&u=http://x?y', '?path=/a/../b&u=http://x?y', []],
  ])('%j forwards %j and selects %j', (raw, forwarded, agents) => {
    expect(splitAgentParam(raw)).toEqual({ forwarded, agents });
  });

  it('refuses a malformed agent value', () => {
    expect(splitAgentParam('agent=%zz')).toBeUndefined();
    expect(splitAgentParam('x=1&agent=%E2%82')).toBeUndefined();
  });

  it('removes the agent parameters and keeps every other byte in order', () => {
    const part = fc
      .stringMatching(/^[A-Za-z0-9%+=._~!$'()*,;:@/?-]{0,12}$/)
      .filter((p) => {
        try {
          return decodeURIComponent(p.split('=')[0]!.replaceAll('+', ' ')) !== 'agent';
        } catch {
          return true;
        }
      });
    fc.assert(
      fc.property(
        fc.array(part, { maxLength: 8 }),
        fc.array(fc.tuple(fc.nat(), fc.stringMatching(/^[A-Za-z0-9._-]{1,10}$/)), { maxLength: 3 }),
        (kept, inserted) => {
          const parts = [...kept];
          for (const [at, name] of inserted) parts.splice(at % (parts.length + 1), 0, `\u0000${name}`);
          const raw = parts.map((p) => (p.startsWith('\u0000') ? `agent=${p.slice(1)}` : p)).join('&');
          const split = splitAgentParam(raw);
          const agentsInOrder = parts.filter((p) => p.startsWith('\u0000')).map((p) => p.slice(1));
          // An empty query is forwarded as none; otherwise every kept part is there, in order.
          const forwarded = raw === '' || kept.length === 0 ? '' : `?${kept.join('&')}`;
          expect(split).toEqual({ forwarded, agents: agentsInOrder });
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('proxyTarget', () => {
  const id = '6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b';
  const base = `/workspaces/${id}/conn`;

  function invalid(run: () => unknown): ApiError {
    try {
      run();
    } catch (error) {
      expect(error).toBeInstanceOf(ApiError);
      expect((error as ApiError).code).toBe('INVALID_REQUEST');
      expect((error as ApiError).status).toBe(400);
      return error as ApiError;
    }
    throw new Error('expected INVALID_REQUEST');
  }

  it('splits the workspace, the path and the query, removing the agent selector', () => {
    expect(proxyTarget(`${base}/a/b?x=1&agent=main&y=a+b&z=`, undefined)).toEqual({
      workspaceId: id,
      path: '/a/b',
      query: '?x=1&y=a+b&z=',
      agentName: 'main',
    });
    expect(proxyTarget(`${base}/`, undefined)).toEqual({ workspaceId: id, path: '/', query: '', agentName: undefined });
    expect(proxyTarget(`${base}/x%20y/?agent=a1`, undefined)).toEqual({ workspaceId: id, path: '/x%20y/', query: '', agentName: 'a1' });
    expect(proxyTarget(`${base}/t?q=%2e%2e%2f`, undefined).query).toBe('?q=%2e%2e%2f');
  });

  it('takes the agent from the header, or from both when they agree', () => {
    expect(proxyTarget(`${base}/t?k=v`, 'side-car').agentName).toBe('side-car');
    expect(proxyTarget(`${base}/t?agent=main`, 'main')).toMatchObject({ agentName: 'main', query: '' });
    expect(proxyTarget(`${base}/t?agent=main&agent=main`, undefined).agentName).toBe('main');
    expect(proxyTarget(`${base}/t?agent=${'x'.repeat(64)}`, undefined).agentName).toBe('x'.repeat(64));
  });

  it('refuses conflicting, repeated or malformed selectors with INVALID_REQUEST', () => {
    invalid(() => proxyTarget(`${base}/t?agent=main`, 'other'));
    invalid(() => proxyTarget(`${base}/t?agent=a&agent=b`, undefined));
    invalid(() => proxyTarget(`${base}/t`, ['a', 'a']));
    for (const name of ['', '-x', '.x', 'a%20b', 'a/b', 'x'.repeat(65), '%E2%82%AC']) {
      invalid(() => proxyTarget(`${base}/t?agent=${name}`, undefined));
    }
    for (const name of ['', 'a b', '_x', 'é', 'y'.repeat(65)]) invalid(() => proxyTarget(`${base}/t`, name));
    invalid(() => proxyTarget(`${base}/t?agent=%zz`, undefined));
  });

  it('refuses a workspace id that is not a UUID with INVALID_REQUEST', () => {
    expect(proxyTarget(`/workspaces/${id.toUpperCase()}/conn/t`, undefined).workspaceId).toBe(id.toUpperCase());
    for (const bad of ['not-a-uuid', '', `${id}0`, id.slice(1), id.replaceAll('-', ''), `{${id}}`, '..']) {
      invalid(() => proxyTarget(`/workspaces/${bad}/conn/t`, undefined));
    }
  });

  it('refuses a fragment (never part of a request target) with INVALID_REQUEST', () => {
    for (const rest of ['/t#x', '/t#', '/a#/../b', '/t?x=1#y', '/t?agent=main#x']) {
      expect(invalid(() => proxyTarget(`${base}${rest}`, undefined)).detail).toMatch(/fragment/);
    }
    expect(proxyTarget(`${base}/t%23x?q=%23`, undefined)).toMatchObject({ path: '/t%23x', query: '?q=%23' });
  });

  it('refuses an escaping path with INVALID_REQUEST and a reason', () => {
    for (const path of ['/../x', '/%2e%2e/x', '/a%2fb', '/a\\b', '/a//b']) {
      expect(invalid(() => proxyTarget(`${base}${path}`, undefined)).detail).toMatch(/\S/);
    }
  });
});

describe('canonicalTarget: the one target routing, authorization, the proxy and logs read', () => {
  const A = '3f1c2a4b-5d6e-4f70-8a9b-0c1d2e3f4a5b';
  it.each([
    ['an origin-form target, unchanged', `/workspaces/${A}/conn/x?y=Z`, `/workspaces/${A}/conn/x?y=Z`],
    ['a workspace id in upper case, lowered', `/workspaces/${A.toUpperCase()}/conn/X/ABC?Q=UP`, `/workspaces/${A}/conn/X/ABC?Q=UP`],
    ['the id at the end', `/workspaces/${A.toUpperCase()}`, `/workspaces/${A}`],
    ['the id before a query', `/workspaces/${A.toUpperCase()}?agent=Main`, `/workspaces/${A}?agent=Main`],
    ['a token id', `/tokens/${A.toUpperCase()}`, `/tokens/${A}`],
    ['not an id: left for the schema to refuse', `/workspaces/${A.toUpperCase()}x/conn`, `/workspaces/${A.toUpperCase()}x/conn`],
    ['not an id route', `/agent/${A.toUpperCase()}`, `/agent/${A.toUpperCase()}`],
    ['an absolute-form target, made origin-form', `http://evil.example/workspaces/${A}/conn/x?q=1`, `/workspaces/${A}/conn/x?q=1`],
    ['absolute-form in upper case, ids lowered', `HTTPS://Host:8443/workspaces/${A.toUpperCase()}/conn/p`, `/workspaces/${A}/conn/p`],
    ['absolute-form with no path', 'http://host', '/'],
    ['absolute-form with a query only', 'http://host?x=1', '/?x=1'],
    ['the asterisk form, unchanged (no route has it)', '*', '*'],
    ['another scheme, unchanged', 'ftp://host/workspaces', 'ftp://host/workspaces'],
  ])('%s', (_name, given, canonical) => {
    expect(canonicalTarget(given)).toBe(canonical);
  });

  it('returns the same string when nothing changes (no allocation on the hot path)', () => {
    const url = `/workspaces/${A}/conn/tool`;
    expect(canonicalTarget(url)).toBe(url);
  });

  it('is idempotent, and the proxy reads from it the workspace and path the router does', () => {
    fc.assert(
      fc.property(fc.uuid(), fc.boolean(), fc.boolean(), fc.stringMatching(/^[a-z0-9]{1,8}(\/[a-z0-9]{1,8}){0,3}$/), (id, upper, absolute, rest) => {
        const raw = `${absolute ? 'http://h' : ''}/workspaces/${upper ? id.toUpperCase() : id}/conn/${rest}`;
        const once = canonicalTarget(raw);
        expect(canonicalTarget(once)).toBe(once);
        const target = proxyTarget(once, undefined);
        expect(target.workspaceId).toBe(id.toLowerCase());
        expect(target.path).toBe(`/${rest}`);
      }),
    );
  });
});
