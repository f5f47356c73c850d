// The gate's decision (contract §5 steps 2-5 and 8): a table over classification × cached connection
// × failed-dial memory × grace, and properties over all of them.
// Reproduce a property failure with FC_SEED=<seed printed by the run>.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Classification } from '../../src/domain/agent.js';
import { ERROR_CATALOGUE, type ErrorCode } from '../../src/domain/errors.js';
import {
  decide,
  leavesConnectionSuspect,
  type CachedConnection,
  type Decision,
  type DecideInput,
  type RememberedFailure,
} from '../../src/gate/decide.js';

const SEC = 1000;
const GRACE = 90 * SEC;
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() % 2 ** 31;

const connected: Classification = { status: 'connected', disconnectedAt: null };
const connecting: Classification = { status: 'connecting', disconnectedAt: null };
const timeout: Classification = { status: 'timeout', disconnectedAt: null };
const goodbye = (forMs: number): Classification => ({ status: 'disconnected', cause: 'goodbye', disconnectedAt: 1, disconnectedForMs: forMs });
const silence = (forMs: number | null): Classification => ({
  status: 'disconnected',
  cause: 'silence',
  disconnectedAt: forMs === null ? null : 1,
  disconnectedForMs: forMs,
});
const unreachable: RememberedFailure = { code: 'AGENT_UNREACHABLE', detail: 'the agent refused the connection', retryAfterSeconds: 4 };
const dialTimedOut: RememberedFailure = { code: 'AGENT_DIAL_TIMEOUT', detail: 'the agent did not answer its health check in time', retryAfterSeconds: 2 };

interface Case {
  name: string;
  input: Partial<DecideInput> & Pick<DecideInput, 'classification'>;
  expected: Decision;
}

const cases: Case[] = [
  {
    name: 'timeout → AGENT_NEVER_CONNECTED, evicted, even with a matching cached connection',
    input: { classification: timeout, cached: 'matching' },
    expected: { kind: 'refuse', code: 'AGENT_NEVER_CONNECTED', detail: 'the agent never connected and its connection timeout has passed', evict: true },
  },
  {
    name: 'timeout with a remembered failure → still AGENT_NEVER_CONNECTED',
    input: { classification: timeout, remembered: unreachable },
    expected: { kind: 'refuse', code: 'AGENT_NEVER_CONNECTED', detail: 'the agent never connected and its connection timeout has passed', evict: true },
  },
  {
    name: 'goodbye a moment ago → AGENT_DISCONNECTED at once, evicted',
    input: { classification: goodbye(0), cached: 'matching' },
    expected: { kind: 'refuse', code: 'AGENT_DISCONNECTED', detail: 'the agent said goodbye', evict: true },
  },
  {
    name: 'silence since an unknown time → AGENT_DISCONNECTED',
    input: { classification: silence(null) },
    expected: { kind: 'refuse', code: 'AGENT_DISCONNECTED', detail: 'the agent stopped reporting heartbeats', evict: true },
  },
  {
    name: 'silence exactly the grace → AGENT_DISCONNECTED (the grace is "at least")',
    input: { classification: silence(GRACE) },
    expected: { kind: 'refuse', code: 'AGENT_DISCONNECTED', detail: 'the agent stopped reporting heartbeats', evict: true },
  },
  {
    name: 'silence past the grace with a remembered failure → AGENT_DISCONNECTED, not the memory',
    input: { classification: silence(GRACE + SEC), remembered: dialTimedOut },
    expected: { kind: 'refuse', code: 'AGENT_DISCONNECTED', detail: 'the agent stopped reporting heartbeats', evict: true },
  },
  {
    name: 'silence under the grace → dial, the cached connection evicted and not reused',
    input: { classification: silence(GRACE - 1), cached: 'matching' },
    expected: { kind: 'dial', evict: true },
  },
  {
    name: 'silence under the grace with a remembered failure → that failure, with its Retry-After',
    input: { classification: silence(31 * SEC), remembered: unreachable },
    expected: {
      kind: 'refuse',
      code: 'AGENT_UNREACHABLE',
      detail: 'the agent refused the connection (remembered from a recent dial)',
      evict: true,
      retryAfterSeconds: 4,
    },
  },
  {
    name: 'a grace of 0 makes any silence strong',
    input: { classification: silence(0), disconnectGraceMs: 0 },
    expected: { kind: 'refuse', code: 'AGENT_DISCONNECTED', detail: 'the agent stopped reporting heartbeats', evict: true },
  },
  {
    name: 'connected, a matching cached connection → reuse',
    input: { classification: connected, cached: 'matching' },
    expected: { kind: 'reuse' },
  },
  {
    name: 'connecting, a matching cached connection → reuse',
    input: { classification: connecting, cached: 'matching' },
    expected: { kind: 'reuse' },
  },
  {
    name: 'connected, a matching cached connection and a remembered failure → reuse (the cache comes first)',
    input: { classification: connected, cached: 'matching', remembered: dialTimedOut },
    expected: { kind: 'reuse' },
  },
  {
    name: 'connected, nothing cached → dial',
    input: { classification: connected },
    expected: { kind: 'dial', evict: false },
  },
  {
    name: 'connected, a connection to an old address → evicted, dial',
    input: { classification: connected, cached: 'stale' },
    expected: { kind: 'dial', evict: true },
  },
  {
    name: 'connecting, nothing cached, a remembered dial timeout → AGENT_DIAL_TIMEOUT at once',
    input: { classification: connecting, remembered: dialTimedOut },
    expected: {
      kind: 'refuse',
      code: 'AGENT_DIAL_TIMEOUT',
      detail: 'the agent did not answer its health check in time (remembered from a recent dial)',
      evict: false,
      retryAfterSeconds: 2,
    },
  },
  {
    name: 'connected, a stale connection and a remembered failure → evicted, the failure',
    input: { classification: connected, cached: 'stale', remembered: unreachable },
    expected: {
      kind: 'refuse',
      code: 'AGENT_UNREACHABLE',
      detail: 'the agent refused the connection (remembered from a recent dial)',
      evict: true,
      retryAfterSeconds: 4,
    },
  },
];

describe('decide: table', () => {
  it.each(cases)('$name', ({ input, expected }) => {
    expect(decide({ cached: 'none', remembered: undefined, disconnectGraceMs: GRACE, ...input })).toStrictEqual(expected);
  });
});

// Whether a call that failed with a code leaves its cached connection suspect (the next call
// dials afresh): one rule for the proxy, WebSockets and the MCP front door.
interface SuspectCase {
  name: string;
  code: ErrorCode;
  suspect: boolean;
}

const suspectCases: SuspectCase[] = [
  { name: 'its sockets broke → suspect', code: 'AGENT_CONNECTION_LOST', suspect: true },
  { name: 'the agent refused a new socket → suspect', code: 'AGENT_UNREACHABLE', suspect: true },
  { name: 'the agent fell silent on a request (a frozen agent) → suspect', code: 'AGENT_RESPONSE_TIMEOUT', suspect: true },
  { name: 'a dial that timed out (no connection to suspect) → not suspect', code: 'AGENT_DIAL_TIMEOUT', suspect: false },
  { name: 'refused by the gate before any call reached the agent → not suspect', code: 'AGENT_DISCONNECTED', suspect: false },
  { name: 'the caller over its cap → not suspect', code: 'RATE_LIMITED', suspect: false },
];

describe('leavesConnectionSuspect: table', () => {
  it.each(suspectCases)('$code: $name', ({ code, suspect }) => {
    expect(leavesConnectionSuspect(code)).toBe(suspect);
  });

  it('every other code of the catalogue leaves the connection trusted', () => {
    const suspects = suspectCases.filter((c) => c.suspect).map((c) => c.code);
    for (const code of Object.keys(ERROR_CATALOGUE) as ErrorCode[]) {
      expect(leavesConnectionSuspect(code), code).toBe(suspects.includes(code));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

const forMsArb = fc.option(fc.integer({ min: 0, max: 10 * GRACE }), { nil: null });
const classificationArb: fc.Arbitrary<Classification> = fc.oneof(
  fc.constantFrom<Classification>(connected, connecting, timeout, { status: 'connected', disconnectedAt: 5 }),
  fc.integer({ min: 0, max: 10 * GRACE }).map(goodbye),
  forMsArb.map(silence),
);
const cachedArb = fc.constantFrom<CachedConnection>('none', 'matching', 'stale');
const rememberedArb = fc.option(
  fc.record({
    code: fc.constantFrom('AGENT_UNREACHABLE' as const, 'AGENT_DIAL_TIMEOUT' as const),
    detail: fc.string(),
    retryAfterSeconds: fc.integer({ min: 1, max: 60 }),
  }),
  { nil: undefined },
);
const graceArb = fc.oneof(fc.constant(0), fc.constant(GRACE), fc.integer({ min: 0, max: 5 * GRACE }));
const inputArb: fc.Arbitrary<DecideInput> = fc.record({
  classification: classificationArb,
  cached: cachedArb,
  remembered: rememberedArb,
  disconnectGraceMs: graceArb,
});

const weak = (i: DecideInput) =>
  i.classification.status === 'disconnected' &&
  i.classification.cause === 'silence' &&
  i.classification.disconnectedForMs !== null &&
  i.classification.disconnectedForMs < i.disconnectGraceMs;

const check = (predicate: (input: DecideInput) => void) => {
  fc.assert(fc.property(inputArb, predicate), { numRuns: 2000, seed: SEED });
};

describe('decide: properties', () => {
  it('a goodbye never dials nor reuses', () => {
    check((input) => {
      if (input.classification.status !== 'disconnected' || input.classification.cause !== 'goodbye') return;
      expect(decide(input)).toMatchObject({ kind: 'refuse', code: 'AGENT_DISCONNECTED', evict: true });
    });
  });

  it('timeout never reuses nor dials', () => {
    check((input) => {
      if (input.classification.status !== 'timeout') return;
      expect(decide(input)).toMatchObject({ kind: 'refuse', code: 'AGENT_NEVER_CONNECTED', evict: true });
    });
  });

  it('a weak signal never reuses: it dials, or refuses with the remembered failure', () => {
    check((input) => {
      if (!weak(input)) return;
      const d = decide(input);
      expect(d.kind).not.toBe('reuse');
      if (input.remembered) expect(d).toMatchObject({ kind: 'refuse', code: input.remembered.code, evict: true });
      else expect(d).toStrictEqual({ kind: 'dial', evict: true });
    });
  });

  it('a remembered failure is never the answer when a live matching connection exists and the agent is connected or connecting', () => {
    check((input) => {
      const { status } = input.classification;
      if (input.cached !== 'matching' || (status !== 'connected' && status !== 'connecting')) return;
      expect(decide(input)).toStrictEqual({ kind: 'reuse' });
    });
  });

  it('only connected or connecting agents are served from the cache, and only on a matching connection', () => {
    check((input) => {
      if (decide(input).kind !== 'reuse') return;
      expect(['connected', 'connecting']).toContain(input.classification.status);
      expect(input.cached).toBe('matching');
    });
  });

  it('every unreachable status evicts; a connection kept is never stale', () => {
    check((input) => {
      const d = decide(input);
      const { status } = input.classification;
      if (status === 'timeout' || status === 'disconnected') expect(d).toMatchObject({ evict: true });
      if (input.cached === 'stale' && d.kind !== 'reuse') expect(d).toMatchObject({ evict: true });
    });
  });

  it('a refusal from memory carries its code and Retry-After', () => {
    check((input) => {
      const d = decide(input);
      if (d.kind !== 'refuse' || d.code === 'AGENT_NEVER_CONNECTED' || d.code === 'AGENT_DISCONNECTED') {
        expect(d).not.toHaveProperty('retryAfterSeconds');
        return;
      }
      expect(input.remembered).toBeDefined();
      expect(d.code).toBe(input.remembered!.code);
      expect(d.retryAfterSeconds).toBe(input.remembered!.retryAfterSeconds);
    });
  });
});
