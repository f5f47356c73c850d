// The work in flight (src/gate/in-flight.ts) and its one rule (src/gate/authority.ts): every kind
// of work ends alike when its authority ends (a revoked token, a deleted workspace, an owner that
// is no longer the token's) or when the gate would refuse a new call on its agent at once; a
// transition this replica wrote ends work at once, a notification only after the rows confirm it.
import { describe, expect, it } from 'vitest';
import type { AgentTimes, Classification } from '../../src/domain/agent.js';
import type { GateEvent } from '../../src/domain/events.js';
import type { Ending } from '../../src/domain/failures.js';
import type { AuthorityQuery, AuthorityRead, AuthorityRow } from '../../src/db/authority-read.js';
import { authorityEnded, endsWork, type Authority, type AuthorityNow } from '../../src/gate/authority.js';
import { endsCallsOn } from '../../src/gate/decide.js';
import { InFlight, watchIntervalMs } from '../../src/gate/in-flight.js';
import { createLogger } from '../../src/logger.js';

describe('endsCallsOn: the rule of a new call, applied to the running ones', () => {
  const grace = 1_000;
  const current = (classification: Classification) => ({ classification, current: true });
  const connected: Classification = { status: 'connected', disconnectedAt: null };
  const cases: Array<[string, { classification: Classification; current: boolean } | undefined, string | undefined]> = [
    ['connected', current(connected), undefined],
    ['connecting', current({ status: 'connecting', disconnectedAt: null }), undefined],
    ['connection timeout passed', current({ status: 'timeout', disconnectedAt: null }), 'the agent never connected and its connection timeout passed during the call'],
    ['a goodbye', current({ status: 'disconnected', cause: 'goodbye', disconnectedAt: 0, disconnectedForMs: 0 }), 'the agent said goodbye during the call'],
    ['silence within the grace (weak)', current({ status: 'disconnected', cause: 'silence', disconnectedAt: 0, disconnectedForMs: grace - 1 }), undefined],
    ['silence past the grace', current({ status: 'disconnected', cause: 'silence', disconnectedAt: 0, disconnectedForMs: grace }), 'the agent stopped reporting heartbeats during the call'],
    ['silence since an unknown time', current({ status: 'disconnected', cause: 'silence', disconnectedAt: null, disconnectedForMs: null }), 'the agent stopped reporting heartbeats during the call'],
    ['connected, but no longer the current agent', { classification: connected, current: false }, 'the workspace was stopped, rebuilt or deleted during the call'],
    ['its row gone', undefined, 'the workspace was stopped, rebuilt or deleted during the call'],
  ];
  it.each(cases)('%s', (_name, now, reason) => {
    expect(endsCallsOn(now, grace)).toBe(reason);
  });
});

const scoped: Authority = { tokenId: 't1', ownerScope: 'o1', workspaceId: 'w1', agentId: 'a1', buildId: 'b1' };
const admin: Authority = { tokenId: null, ownerScope: null, workspaceId: 'w1', agentId: 'a1', buildId: 'b1' };
const atTheGate: Authority = { ...scoped, agentId: undefined, buildId: undefined };

describe('endsWork: a transition this replica wrote', () => {
  it.each<[string, GateEvent, Authority, Ending['code'] | undefined]>([
    ['its token revoked', { kind: 'token_revoked', tokenId: 't1' }, scoped, 'UNAUTHENTICATED'],
    ['another token revoked', { kind: 'token_revoked', tokenId: 't2' }, scoped, undefined],
    ['a token that cannot be revoked', { kind: 'token_revoked', tokenId: 't1' }, admin, undefined],
    ['its workspace deleted', { kind: 'workspace_deleted', workspaceId: 'w1' }, scoped, 'WORKSPACE_NOT_FOUND'],
    ['its workspace deleted, no agent chosen yet', { kind: 'workspace_deleted', workspaceId: 'w1' }, atTheGate, 'WORKSPACE_NOT_FOUND'],
    ['another workspace deleted', { kind: 'workspace_deleted', workspaceId: 'w2' }, scoped, undefined],
    ['its workspace given to another owner', { kind: 'workspace_owner_changed', workspaceId: 'w1', ownerId: 'o2' }, scoped, 'WORKSPACE_NOT_FOUND'],
    ['its workspace given to its own owner', { kind: 'workspace_owner_changed', workspaceId: 'w1', ownerId: 'o1' }, scoped, undefined],
    ['an owner change under a token that sees every workspace', { kind: 'workspace_owner_changed', workspaceId: 'w1', ownerId: 'o2' }, admin, undefined],
    ['its workspace stopped or rebuilt', { kind: 'build_created', workspaceId: 'w1', buildId: 'b2' }, scoped, 'AGENT_CONNECTION_LOST'],
    ["its agent's own build, echoed back", { kind: 'build_created', workspaceId: 'w1', buildId: 'b1' }, scoped, undefined],
    ['a build before the gate chose an agent (the gate reads it)', { kind: 'build_created', workspaceId: 'w1', buildId: 'b2' }, atTheGate, undefined],
    ['another workspace rebuilt', { kind: 'build_created', workspaceId: 'w2', buildId: 'b9' }, scoped, undefined],
    ['its agent said goodbye', { kind: 'agent_disconnected', workspaceId: 'w1', agentId: 'a1' }, scoped, 'AGENT_CONNECTION_LOST'],
    ['another agent said goodbye', { kind: 'agent_disconnected', workspaceId: 'w1', agentId: 'a2' }, scoped, undefined],
    ['its agent connected', { kind: 'agent_connected', workspaceId: 'w1', agentId: 'a1' }, scoped, undefined],
    ['its agent reconnected', { kind: 'agent_reconnected', workspaceId: 'w1', agentId: 'a1' }, scoped, undefined],
    ['a token created', { kind: 'token_created', tokenId: 't1' }, scoped, undefined],
  ])('%s', (_name, event, authority, code) => {
    expect(endsWork(event, authority)?.code).toBe(code);
  });
});

describe('authorityEnded: what the rows say now', () => {
  const connected: Classification = { status: 'connected', disconnectedAt: null };
  const holds: AuthorityNow = { tokenLive: true, ownerId: 'o1', agent: { classification: connected, current: true } };
  it.each<[string, AuthorityNow, Authority, Ending['code'] | undefined]>([
    ['all holds', holds, scoped, undefined],
    ['its token revoked', { ...holds, tokenLive: false }, scoped, 'UNAUTHENTICATED'],
    ['its workspace deleted', { ...holds, ownerId: null }, scoped, 'WORKSPACE_NOT_FOUND'],
    ['another owner', { ...holds, ownerId: 'o2' }, scoped, 'WORKSPACE_NOT_FOUND'],
    ['another owner, a token that sees every workspace', { ...holds, ownerId: 'o2' }, admin, undefined],
    ['its agent no longer current', { ...holds, agent: { classification: connected, current: false } }, scoped, 'AGENT_CONNECTION_LOST'],
    ["its agent's row gone", { ...holds, agent: undefined }, scoped, 'AGENT_CONNECTION_LOST'],
    ['no agent chosen yet: only the token and the workspace count', { ...holds, agent: undefined }, atTheGate, undefined],
    ['a goodbye', { ...holds, agent: { classification: { status: 'disconnected', cause: 'goodbye', disconnectedAt: 0, disconnectedForMs: 0 }, current: true } }, scoped, 'AGENT_CONNECTION_LOST'],
  ])('%s', (_name, now, authority, code) => {
    expect(authorityEnded(now, authority, 1_000)?.code).toBe(code);
  });
});

describe('InFlight', () => {
  const times = (lastConnectedAt: number, disconnectedAt: number | null = null): AgentTimes => ({
    createdAt: 0,
    firstConnectedAt: 0,
    lastConnectedAt,
    disconnectedAt,
    connectionTimeoutSeconds: 0,
  });
  const now = 10_000;
  const live: AuthorityRow = { tokenLive: true, ownerId: 'o1', agent: { times: times(now - 10), current: true } };

  /** A registry whose reads answer from `rows` (by query), counting them. */
  const setup = (rows: (q: AuthorityQuery) => AuthorityRow, options: { fail?: () => boolean; during?: () => void } = {}) => {
    const reads: AuthorityQuery[][] = [];
    const inFlight = new InFlight({
      read: async (queries): Promise<AuthorityRead> => {
        reads.push([...queries]);
        options.during?.();
        await Promise.resolve();
        if (options.fail?.()) throw new Error('database unavailable');
        return { nowMs: now, rows: queries.map(rows) };
      },
      inactiveTimeoutMs: 100,
      disconnectGraceMs: 1_000,
      intervalMs: 50,
      log: createLogger('silent'),
    });
    const work = (authority: Partial<Authority> = {}, agent: [string, string] | null = ['a1', 'b1']) => {
      const registration = inFlight.register({ tokenId: 't1', ownerScope: 'o1', workspaceId: 'w1', ...authority });
      if (agent) registration.reached(...agent);
      const ended: Ending[] = [];
      registration.onEnd((ending) => ended.push(ending));
      return { registration, ended };
    };
    return { inFlight, reads, work };
  };

  it('a transition this replica wrote ends the work it names at once, without a read, each once', () => {
    const { inFlight, reads, work } = setup(() => live);
    const mine = work();
    const other = work({ workspaceId: 'w2' }, ['a2', 'b2']);
    const otherToken = work({ tokenId: 't2' });
    expect(inFlight.apply({ kind: 'token_revoked', tokenId: 't1' })).toBe(2);
    expect(mine.ended).toEqual([{ code: 'UNAUTHENTICATED', reason: 'its token was revoked' }]);
    expect(other.ended).toHaveLength(1);
    expect(otherToken.ended).toEqual([]);
    expect(inFlight.apply({ kind: 'workspace_deleted', workspaceId: 'w1' })).toBe(1);
    expect(otherToken.ended.map((e) => e.code)).toEqual(['WORKSPACE_NOT_FOUND']);
    expect(mine.ended).toHaveLength(1);
    expect(reads).toEqual([]);
  });

  it('a connection lost as a whole ends, at once and without a read, the work that reached that agent only', () => {
    const { inFlight, reads, work } = setup(() => live);
    const onIt = [work(), work({ tokenId: 't2' })];
    const otherAgent = work({}, ['a9', 'b1']);
    const notYetReached = work({}, null);
    const otherWorkspace = work({ workspaceId: 'w2' });
    expect(inFlight.connectionLost('w1', 'a1', 'the tunnel closed')).toBe(2);
    for (const w of onIt) expect(w.ended).toEqual([{ code: 'AGENT_CONNECTION_LOST', reason: 'the tunnel closed' }]);
    for (const w of [otherAgent, notYetReached, otherWorkspace]) expect(w.ended).toEqual([]);
    expect(inFlight.connectionLost('w1', 'a1', 'again')).toBe(0);
    expect(reads).toEqual([]);
  });

  it('a notification ends only what the rows confirm: a forged one ends nothing', async () => {
    let revoked = false;
    const { inFlight, reads, work } = setup(() => ({ ...live, tokenLive: !revoked }));
    const a = work();
    const unrelated = work({ workspaceId: 'w9', tokenId: 't9' });
    expect(await inFlight.hint({ kind: 'token_revoked', tokenId: 't1' })).toBe(0);
    expect(a.ended).toEqual([]);
    // Only the work the event names was read.
    expect(reads).toEqual([[{ tokenId: 't1', workspaceId: 'w1', agentId: 'a1' }]]);
    revoked = true;
    expect(await inFlight.hint({ kind: 'token_revoked', tokenId: 't1' })).toBe(1);
    expect(a.ended.map((e) => e.code)).toEqual(['UNAUTHENTICATED']);
    expect(unrelated.ended).toEqual([]);
    // One that names nothing in flight reads nothing.
    expect(await inFlight.hint({ kind: 'workspace_deleted', workspaceId: 'w-unknown' })).toBe(0);
    expect(reads).toHaveLength(2);
  });

  it('a recheck reads everything in one query (each authority once) and ends what no longer holds, each once', async () => {
    const rows = new Map<string, AuthorityRow>([
      ['a1', live],
      ['silent', { ...live, agent: { times: times(now - 100 - 1_000), current: true } }],
      ['weak', { ...live, agent: { times: times(now - 500), current: true } }],
      ['gone', { ...live, agent: { times: times(now - 10, now - 5), current: true } }],
      ['replaced', { ...live, agent: { times: times(now - 10), current: false } }],
    ]);
    const { inFlight, reads, work } = setup((q) => rows.get(q.agentId ?? '') ?? { tokenLive: true, ownerId: 'o1', agent: undefined });
    const silent = [work({}, ['silent', 'b']), work({}, ['silent', 'b'])];
    const weak = work({}, ['weak', 'b']);
    const alive = work();
    const ended = [...silent, work({}, ['gone', 'b']), work({}, ['replaced', 'b']), work({}, ['row deleted', 'b'])];
    const atGate = work({}, null);
    expect(await inFlight.recheck()).toBe(5);
    expect(reads).toHaveLength(1);
    expect(reads[0]!.map((q) => q.agentId ?? '-').sort()).toEqual(['-', 'a1', 'gone', 'replaced', 'row deleted', 'silent', 'weak']);
    for (const w of ended) expect(w.ended.map((e) => e.code)).toEqual(['AGENT_CONNECTION_LOST']);
    expect(silent[0]!.ended[0]!.reason).toBe('the agent stopped reporting heartbeats during the call');
    for (const w of [weak, alive, atGate]) expect(w.ended).toEqual([]);
    // What ended is not read again.
    await inFlight.recheck();
    expect(reads[1]!.map((q) => q.agentId ?? '-').sort()).toEqual(['-', 'a1', 'weak']);
  });

  it('work is judged on the authority it had when the read began: an agent reached during the read is newer than it', async () => {
    let later: ReturnType<ReturnType<typeof setup>['work']> | undefined;
    const { inFlight, work } = setup((q) => ({ ...live, agent: q.agentId === undefined ? undefined : { times: times(0), current: true } }), {
      during: () => {
        later ??= work({}, null);
        later.registration.reached('a1', 'b1');
      },
    });
    const before = work({}, null);
    before.registration.reached('a1', 'b1');
    const atGate = work({}, null);
    expect(await inFlight.recheck()).toBe(1);
    expect(before.ended).toHaveLength(1);
    expect(later?.ended).toEqual([]);
    // Judged before it reached its agent: the silence of the agent it then reached is not its read.
    atGate.registration.reached('a1', 'b1');
    expect(atGate.ended).toEqual([]);
  });

  it('a read that fails ends nothing, and the next one tries again', async () => {
    let fail = true;
    const { inFlight, work } = setup(() => ({ ...live, tokenLive: false }), { fail: () => fail });
    const a = work();
    expect(await inFlight.recheck()).toBe(0);
    expect(a.ended).toEqual([]);
    fail = false;
    expect(await inFlight.recheck()).toBe(1);
  });

  it('reads one at a time: what asks during a read is read together after it', async () => {
    const { inFlight, reads, work } = setup(() => live);
    work();
    work({ workspaceId: 'w2', tokenId: 't2' });
    const first = inFlight.recheck();
    const second = inFlight.hint({ kind: 'workspace_deleted', workspaceId: 'w2' });
    const third = inFlight.hint({ kind: 'token_revoked', tokenId: 't1' });
    await Promise.all([first, second, third]);
    expect(reads).toHaveLength(2);
    expect(reads[1]!.map((q) => q.workspaceId).sort()).toEqual(['w1', 'w2']);
  });

  it('a reaction set after the end runs at once; closed work is neither ended nor read', async () => {
    const { inFlight, reads, work } = setup(() => live);
    const a = work();
    inFlight.apply({ kind: 'workspace_deleted', workspaceId: 'w1' });
    const late: Ending[] = [];
    a.registration.onEnd((ending) => late.push(ending));
    expect(late.map((e) => e.code)).toEqual(['WORKSPACE_NOT_FOUND']);
    expect(a.registration.ended?.code).toBe('WORKSPACE_NOT_FOUND');
    const b = work();
    b.registration.close();
    b.registration.close();
    expect(inFlight.apply({ kind: 'token_revoked', tokenId: 't1' })).toBe(0);
    expect(await inFlight.recheck()).toBe(0);
    expect(reads).toEqual([]);
    a.registration.close();
    expect(inFlight.size).toBe(0);
  });

  it('reads every half inactive timeout, within 100 ms and 5 s', () => {
    expect([watchIntervalMs(50), watchIntervalMs(300), watchIntervalMs(30_000)]).toEqual([100, 150, 5_000]);
  });
});
