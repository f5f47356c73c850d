// Agent status classification (contract §3): the edge-case matrix, the derived Status()
// matrix, and properties over realistic timestamps (epoch milliseconds with microsecond fractions).
// Reproduce a property failure with FC_SEED=<seed printed by the run>.
import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { classifyAgent, disconnectedSeconds } from '../../src/gate/classify.js';
import type { AgentTimes, Classification } from '../../src/domain/agent.js';

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const INACTIVE = 30 * SEC;
/** A fixed "database now": 2023-11-14T22:13:20Z. */
const NOW = 1_700_000_000_000;
/** A timestamp with a microsecond fraction, as PostgreSQL hands it over. */
const T = 1_700_000_000_123.456;
/** One microsecond in milliseconds. */
const MICRO = 0.001;
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() % 2 ** 31;

function row(times: Partial<AgentTimes>): AgentTimes {
  return {
    createdAt: NOW - HOUR,
    firstConnectedAt: null,
    lastConnectedAt: null,
    disconnectedAt: null,
    connectionTimeoutSeconds: 0,
    ...times,
  };
}

interface Case {
  name: string;
  agent: AgentTimes;
  now: number;
  inactiveMs?: number;
  expected: Classification;
}

function connected(disconnectedAt: number | null = null): Classification {
  return { status: 'connected', disconnectedAt };
}
function goodbye(disconnectedAt: number | null, disconnectedForMs: number | null): Classification {
  return { status: 'disconnected', cause: 'goodbye', disconnectedAt, disconnectedForMs };
}
function silence(disconnectedAt: number | null, disconnectedForMs: number | null): Classification {
  return { status: 'disconnected', cause: 'silence', disconnectedAt, disconnectedForMs };
}

// coder-behaviour section 1.4, one or more rows per line of the matrix.
const edgeCases: Case[] = [
  {
    name: 'first NULL, last and disc set, within the connection timeout → connecting, disc column reported',
    agent: row({
      createdAt: NOW - 10 * SEC,
      lastConnectedAt: NOW - 5 * SEC,
      disconnectedAt: NOW - 2 * SEC,
      connectionTimeoutSeconds: 60,
    }),
    now: NOW,
    expected: { status: 'connecting', disconnectedAt: NOW - 2 * SEC },
  },
  {
    name: 'first NULL, last set and stale, past the connection timeout → timeout (rule 1 wins)',
    agent: row({
      createdAt: NOW - 2 * HOUR,
      lastConnectedAt: NOW - HOUR,
      disconnectedAt: null,
      connectionTimeoutSeconds: 60,
    }),
    now: NOW,
    expected: { status: 'timeout', disconnectedAt: null },
  },
  {
    name: 'first NULL, last fresh, past the connection timeout → timeout, disc column reported',
    agent: row({
      createdAt: NOW - 2 * HOUR,
      lastConnectedAt: NOW,
      disconnectedAt: NOW - MIN,
      connectionTimeoutSeconds: 60,
    }),
    now: NOW,
    expected: { status: 'timeout', disconnectedAt: NOW - MIN },
  },
  {
    name: 'last t, disc NULL, age below the inactive timeout → connected',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 10 * SEC }),
    now: NOW,
    expected: connected(),
  },
  {
    name: 'last t, disc NULL, age exactly the inactive timeout → connected (strict >)',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - INACTIVE }),
    now: NOW,
    expected: connected(),
  },
  {
    name: 'last t, disc NULL, age one microsecond over the inactive timeout → disconnected since last',
    agent: row({ firstConnectedAt: T - 5 * MIN, lastConnectedAt: T }),
    now: T + INACTIVE + MICRO,
    expected: silence(T, T + INACTIVE + MICRO - T),
  },
  {
    name: 'last t, disc NULL, age over the inactive timeout → disconnected since last',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 31 * SEC }),
    now: NOW,
    expected: silence(NOW - 31 * SEC, 31 * SEC),
  },
  {
    name: 'last t, disc t (equal), fresh → disconnected by goodbye',
    agent: row({ firstConnectedAt: T - 5 * MIN, lastConnectedAt: T, disconnectedAt: T }),
    now: T,
    expected: goodbye(T, 0),
  },
  {
    name: 'last t, disc t (equal), old → disconnected by goodbye since t',
    agent: row({ firstConnectedAt: NOW - HOUR, lastConnectedAt: NOW - 10 * MIN, disconnectedAt: NOW - 10 * MIN }),
    now: NOW,
    expected: goodbye(NOW - 10 * MIN, 10 * MIN),
  },
  {
    name: 'last t, disc t−1s, last fresh → connected, stale disc reported',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 5 * SEC, disconnectedAt: NOW - 6 * SEC }),
    now: NOW,
    expected: connected(NOW - 6 * SEC),
  },
  {
    name: 'last t, disc t−1µs, last fresh → connected (one microsecond is not equal)',
    agent: row({ firstConnectedAt: T - 5 * MIN, lastConnectedAt: T, disconnectedAt: T - MICRO }),
    now: T + SEC,
    expected: connected(T - MICRO),
  },
  {
    name: 'last t, disc t+1µs → disconnected by goodbye (one microsecond is not equal)',
    agent: row({ firstConnectedAt: T - 5 * MIN, lastConnectedAt: T, disconnectedAt: T + MICRO }),
    now: T + SEC,
    expected: goodbye(T + MICRO, T + SEC - (T + MICRO)),
  },
  {
    name: 'last t, disc t+1s, fresh → disconnected by goodbye since t+1s',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 5 * SEC, disconnectedAt: NOW - 4 * SEC }),
    now: NOW,
    expected: goodbye(NOW - 4 * SEC, 4 * SEC),
  },
  {
    name: 'last t, disc t+1s, old → disconnected by goodbye since t+1s (not since last)',
    agent: row({ firstConnectedAt: NOW - HOUR, lastConnectedAt: NOW - 10 * MIN, disconnectedAt: NOW - 10 * MIN + SEC }),
    now: NOW,
    expected: goodbye(NOW - 10 * MIN + SEC, 10 * MIN - SEC),
  },
  {
    name: 'first set, last NULL, disc NULL → disconnected since an unknown time',
    agent: row({ firstConnectedAt: NOW - 5 * MIN }),
    now: NOW,
    expected: silence(null, null),
  },
  {
    name: 'first set, last NULL, disc set → disconnected by goodbye',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, disconnectedAt: NOW - 2 * MIN }),
    now: NOW,
    expected: goodbye(NOW - 2 * MIN, 2 * MIN),
  },
  {
    name: 'last in the future, disc NULL → connected (negative age)',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW + 10 * SEC }),
    now: NOW,
    expected: connected(),
  },
  {
    name: 'last far in the future, disc NULL → connected',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW + HOUR }),
    now: NOW,
    expected: connected(),
  },
  {
    name: 'first NULL, timeout 60 s, created exactly 60 s ago → connecting (strict >)',
    agent: row({ createdAt: NOW - 60 * SEC, connectionTimeoutSeconds: 60 }),
    now: NOW,
    expected: { status: 'connecting', disconnectedAt: null },
  },
  {
    name: 'first NULL, timeout 60 s, created 60 s and one microsecond ago → timeout',
    agent: row({ createdAt: T - 60 * SEC - MICRO, connectionTimeoutSeconds: 60 }),
    now: T,
    expected: { status: 'timeout', disconnectedAt: null },
  },
  {
    name: 'first NULL, timeout 0, created ten years ago → connecting (0 never times out)',
    agent: row({ createdAt: NOW - 10 * 365 * 24 * HOUR, connectionTimeoutSeconds: 0 }),
    now: NOW,
    expected: { status: 'connecting', disconnectedAt: null },
  },
];

// coder-behaviour section 4.6: now fixed, inactive 30 s.
const derivedMatrix: Case[] = [
  {
    name: '(a) never connected, timeout 0, created 1 h ago → connecting',
    agent: row({ createdAt: NOW - HOUR, connectionTimeoutSeconds: 0 }),
    now: NOW,
    expected: { status: 'connecting', disconnectedAt: null },
  },
  {
    name: '(b) never connected, timeout 60 s, created 60 s ago → connecting',
    agent: row({ createdAt: NOW - 60 * SEC, connectionTimeoutSeconds: 60 }),
    now: NOW,
    expected: { status: 'connecting', disconnectedAt: null },
  },
  {
    name: '(b) never connected, timeout 60 s, created 61 s ago → timeout',
    agent: row({ createdAt: NOW - 61 * SEC, connectionTimeoutSeconds: 60 }),
    now: NOW,
    expected: { status: 'timeout', disconnectedAt: null },
  },
  {
    name: '(c) first 5 min ago, last now → connected, disc nil',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW }),
    now: NOW,
    expected: connected(),
  },
  {
    name: '(d) last exactly 30 s ago → connected',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 30 * SEC }),
    now: NOW,
    expected: connected(),
  },
  {
    name: '(d) last 31 s ago → disconnected, disc = last',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 31 * SEC }),
    now: NOW,
    expected: silence(NOW - 31 * SEC, 31 * SEC),
  },
  {
    name: '(e) last t, disc t → disconnected, disc t',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 10 * SEC, disconnectedAt: NOW - 10 * SEC }),
    now: NOW,
    expected: goodbye(NOW - 10 * SEC, 10 * SEC),
  },
  {
    name: '(f) last t fresh, disc t−1 s → connected, disc t−1 s reported',
    agent: row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW, disconnectedAt: NOW - SEC }),
    now: NOW,
    expected: connected(NOW - SEC),
  },
  {
    name: '(g) first set, last NULL, disc NULL → disconnected, disc nil',
    agent: row({ firstConnectedAt: NOW - 5 * MIN }),
    now: NOW,
    expected: silence(null, null),
  },
];

describe('classifyAgent: edge-case matrix', () => {
  it.each(edgeCases)('$name', ({ agent, now, inactiveMs, expected }) => {
    expect(classifyAgent(agent, now, inactiveMs ?? INACTIVE)).toStrictEqual(expected);
  });
});

describe('classifyAgent: derived Status() matrix (a)-(g)', () => {
  it.each(derivedMatrix)('$name', ({ agent, now, inactiveMs, expected }) => {
    expect(classifyAgent(agent, now, inactiveMs ?? INACTIVE)).toStrictEqual(expected);
  });
});

describe('disconnectedSeconds (agentDisconnectedFor), case (h)', () => {
  it('on (g), disconnected since an unknown time → undefined', () => {
    const c = classifyAgent(row({ firstConnectedAt: NOW - 5 * MIN }), NOW, INACTIVE);
    expect(c.status).toBe('disconnected');
    expect(disconnectedSeconds(c)).toBeUndefined();
  });

  it('on (d) with last 31 s ago → 31', () => {
    const c = classifyAgent(row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 31 * SEC }), NOW, INACTIVE);
    expect(disconnectedSeconds(c)).toBe(31);
  });

  it('rounds down to whole seconds', () => {
    const c = classifyAgent(
      row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - 31 * SEC, disconnectedAt: NOW - 2 * SEC - 999.999 }),
      NOW,
      INACTIVE,
    );
    expect(c).toMatchObject({ status: 'disconnected', cause: 'goodbye' });
    expect(disconnectedSeconds(c)).toBe(2);
  });

  it('a goodbye in the future → 0, never negative', () => {
    const c = classifyAgent(
      row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW - SEC, disconnectedAt: NOW + 5 * SEC }),
      NOW,
      INACTIVE,
    );
    expect(c).toStrictEqual(goodbye(NOW + 5 * SEC, 0));
    expect(disconnectedSeconds(c)).toBe(0);
  });

  it('connecting, timeout and connected → undefined, even with a disconnected_at set', () => {
    const connecting = classifyAgent(row({ disconnectedAt: NOW - MIN, connectionTimeoutSeconds: 0 }), NOW, INACTIVE);
    const timedOut = classifyAgent(
      row({ createdAt: NOW - HOUR, disconnectedAt: NOW - MIN, connectionTimeoutSeconds: 60 }),
      NOW,
      INACTIVE,
    );
    const live = classifyAgent(
      row({ firstConnectedAt: NOW - 5 * MIN, lastConnectedAt: NOW, disconnectedAt: NOW - MIN }),
      NOW,
      INACTIVE,
    );
    expect([connecting.status, timedOut.status, live.status]).toEqual(['connecting', 'timeout', 'connected']);
    expect(disconnectedSeconds(connecting)).toBeUndefined();
    expect(disconnectedSeconds(timedOut)).toBeUndefined();
    expect(disconnectedSeconds(live)).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Properties. Timestamps are the base plus a whole number of microseconds, within about ±35 min,
// so that the interesting boundaries (inactive timeouts up to 2 min) are hit often.

const BASE_US = 1_700_000_000_000_000;
const offsetUs = fc.integer({ min: -2_000_000_000, max: 2_000_000_000 });
/** Whole microseconds to epoch milliseconds, rounded the way PostgreSQL's float8 cast rounds. */
const at = (us: number): number => (BASE_US + us) / 1000;
const timeArb = offsetUs.map(at);
const inactiveArb = fc.integer({ min: 1, max: 120_000 });

/** Rows where equal last/disconnected timestamps and NULLs come up often. */
const agentArb: fc.Arbitrary<AgentTimes> = fc
  .record({
    createdAt: timeArb,
    firstConnectedAt: fc.option(timeArb, { nil: null }),
    lastConnectedAt: fc.option(timeArb, { nil: null }),
    disc: fc.oneof(
      fc.constant<null>(null),
      timeArb,
      fc.constant<'same'>('same'),
      fc.integer({ min: -1000, max: 1000 }).map((d) => ({ nearLastUs: d })),
    ),
    connectionTimeoutSeconds: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3600 })),
  })
  .map(({ disc, ...rest }) => {
    let disconnectedAt: number | null;
    if (disc === null || typeof disc === 'number') disconnectedAt = disc;
    else if (disc === 'same') disconnectedAt = rest.lastConnectedAt;
    else disconnectedAt = rest.lastConnectedAt === null ? null : rest.lastConnectedAt + disc.nearLastUs / 1000;
    return { ...rest, disconnectedAt };
  });

/** An independent reading of the contract §3 rules, used as an oracle. */
function reference(a: AgentTimes, now: number, inactiveMs: number): Classification {
  if (a.firstConnectedAt === null) {
    const timedOut = a.connectionTimeoutSeconds > 0 && now - a.createdAt > a.connectionTimeoutSeconds * 1000;
    return { status: timedOut ? 'timeout' : 'connecting', disconnectedAt: a.disconnectedAt };
  }
  if (a.disconnectedAt !== null && (a.lastConnectedAt === null || a.disconnectedAt >= a.lastConnectedAt)) {
    return goodbye(a.disconnectedAt, Math.max(0, now - a.disconnectedAt));
  }
  if (a.lastConnectedAt === null) return silence(null, null);
  if (now - a.lastConnectedAt > inactiveMs) {
    return silence(a.lastConnectedAt, Math.max(0, now - a.lastConnectedAt));
  }
  return connected(a.disconnectedAt);
}

describe('classifyAgent: properties', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('agrees with an independent reading of the rules', () => {
    fc.assert(
      fc.property(agentArb, timeArb, inactiveArb, (agent, now, inactive) => {
        expect(classifyAgent(agent, now, inactive)).toStrictEqual(reference(agent, now, inactive));
      }),
      { numRuns: 2000, seed: SEED },
    );
  });

  it('moving now forward never turns disconnected or timeout into anything else', () => {
    fc.assert(
      fc.property(
        agentArb,
        timeArb,
        fc.integer({ min: 0, max: 2_000_000_000 }),
        inactiveArb,
        (agent, now, laterUs, inactive) => {
          const before = classifyAgent(agent, now, inactive);
          const after = classifyAgent(agent, now + laterUs / 1000, inactive);
          if (before.status === 'disconnected') {
            expect(after).toMatchObject({ status: 'disconnected', cause: before.cause });
          }
          if (before.status === 'timeout') expect(after.status).toBe('timeout');
          if (before.status === 'connecting') expect(['connecting', 'timeout']).toContain(after.status);
        },
      ),
      { numRuns: 2000, seed: SEED },
    );
  });

  it('a heartbeat at now after any earlier goodbye yields connected', () => {
    fc.assert(
      fc.property(
        agentArb,
        timeArb,
        timeArb,
        fc.integer({ min: 1, max: 2_000_000_000 }),
        fc.boolean(),
        inactiveArb,
        (agent, now, first, beforeUs, hadGoodbye, inactive) => {
          const disconnectedAt = hadGoodbye ? now - beforeUs / 1000 : null;
          const beat: AgentTimes = { ...agent, firstConnectedAt: first, lastConnectedAt: now, disconnectedAt };
          expect(classifyAgent(beat, now, inactive)).toStrictEqual(connected(disconnectedAt));
        },
      ),
      { numRuns: 1000, seed: SEED },
    );
  });

  it('a heartbeat one microsecond after a goodbye yields connected', () => {
    fc.assert(
      fc.property(offsetUs, inactiveArb, (us, inactive) => {
        const agent = row({ firstConnectedAt: at(us) - HOUR, lastConnectedAt: at(us + 1), disconnectedAt: at(us) });
        expect(classifyAgent(agent, at(us + 1), inactive)).toStrictEqual(connected(at(us)));
      }),
      { seed: SEED },
    );
  });

  it('is deterministic and does not read the wall clock', () => {
    fc.assert(
      fc.property(agentArb, timeArb, inactiveArb, (agent, now, inactive) => {
        vi.useFakeTimers();
        try {
          vi.setSystemTime(new Date('2001-01-01T00:00:00Z'));
          const first = classifyAgent(agent, now, inactive);
          vi.setSystemTime(new Date('2099-12-31T23:59:59Z'));
          const second = classifyAgent(agent, now, inactive);
          const third = classifyAgent({ ...agent }, now, inactive);
          expect(second).toStrictEqual(first);
          expect(third).toStrictEqual(first);
        } finally {
          vi.useRealTimers();
        }
      }),
      { numRuns: 300, seed: SEED },
    );
  });

  it('disconnectedForMs is never negative and equals now minus disconnectedAt, clamped', () => {
    fc.assert(
      fc.property(agentArb, timeArb, inactiveArb, (agent, now, inactive) => {
        const c = classifyAgent(agent, now, inactive);
        if (c.status !== 'disconnected') return;
        if (c.disconnectedAt === null) {
          expect(c.disconnectedForMs).toBeNull();
          expect(disconnectedSeconds(c)).toBeUndefined();
        } else {
          expect(c.disconnectedForMs).not.toBeNull();
          expect(c.disconnectedForMs!).toBeGreaterThanOrEqual(0);
          expect(Object.is(c.disconnectedForMs, -0)).toBe(false);
          expect(c.disconnectedForMs).toBe(Math.max(0, now - c.disconnectedAt));
          expect(disconnectedSeconds(c)).toBeGreaterThanOrEqual(0);
        }
      }),
      { numRuns: 2000, seed: SEED },
    );
  });

  it('status is connecting or timeout exactly when firstConnectedAt is null', () => {
    fc.assert(
      fc.property(agentArb, timeArb, inactiveArb, (agent, now, inactive) => {
        const { status } = classifyAgent(agent, now, inactive);
        expect(status === 'connecting' || status === 'timeout').toBe(agent.firstConnectedAt === null);
      }),
      { numRuns: 2000, seed: SEED },
    );
  });

  it('the inactive timeout boundary is strict at microsecond precision', () => {
    fc.assert(
      fc.property(offsetUs, inactiveArb, (us, inactive) => {
        const agent = row({ firstConnectedAt: at(us) - HOUR, lastConnectedAt: at(us) });
        expect(classifyAgent(agent, at(us + inactive * 1000), inactive).status).toBe('connected');
        expect(classifyAgent(agent, at(us + inactive * 1000 + 1), inactive).status).toBe('disconnected');
      }),
      { seed: SEED },
    );
  });
});
