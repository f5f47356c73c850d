// The watch over calls in flight (src/gate/call-watch.ts) and its pure rule (endsCallsOn in
// src/gate/decide.ts): a call in flight ends when the gate would refuse a new call on its agent
// at once, and only then; only calls that reached their agent before the read are ended.
import { describe, expect, it } from 'vitest';
import { AgentGone } from '../../src/domain/agent-gone.js';
import type { AgentTimes, Classification } from '../../src/domain/agent.js';
import { CallWatch, watchIntervalMs } from '../../src/gate/call-watch.js';
import { endsCallsOn } from '../../src/gate/decide.js';
import { createLogger } from '../../src/logger.js';
import { RunningCalls } from '../../src/mcp/calls.js';
import { ProxiedCalls } from '../../src/proxy/proxied-calls.js';

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

describe('CallWatch', () => {
  const agentNow = (lastConnectedAt: number, disconnectedAt: number | null = null, isCurrent = true) => ({
    times: { createdAt: 0, firstConnectedAt: 0, lastConnectedAt, disconnectedAt, connectionTimeoutSeconds: 0 } satisfies AgentTimes,
    current: isCurrent,
  });
  const setup = (agents: Map<string, ReturnType<typeof agentNow>>, nowMs: number, options: { fail?: () => boolean; during?: () => void } = {}) => {
    const calls = new RunningCalls();
    const proxied = new ProxiedCalls();
    const reads: string[][] = [];
    const watch = new CallWatch({
      sources: [() => calls.reached(), () => proxied.reached()],
      read: async (ids) => {
        reads.push([...ids]);
        options.during?.();
        if (options.fail?.()) throw new Error('database unavailable');
        return { nowMs, agents };
      },
      inactiveTimeoutMs: 100,
      disconnectGraceMs: 1_000,
      intervalMs: 50,
      log: createLogger('silent'),
    });
    let n = 0;
    const on = (agentId: string) => {
      const call = calls.open(`k${(n += 1)}`);
      call.setTarget({ workspaceId: 'w', agentId, buildId: 'b' });
      return call;
    };
    return { calls, proxied, reads, watch, on };
  };

  it('reads nothing while no call has reached its agent', async () => {
    const { reads, watch, calls } = setup(new Map(), 0);
    calls.open('still at the gate');
    expect(await watch.look()).toBe(0);
    expect(reads).toEqual([]);
  });

  it('ends the calls on an agent the gate would now refuse, and only those', async () => {
    const now = 10_000;
    const agents = new Map([
      ['silent', agentNow(now - 100 - 1_000)],
      ['weak', agentNow(now - 500)],
      ['alive', agentNow(now - 10)],
      ['gone', agentNow(now - 10, now - 5)],
      ['replaced', agentNow(now - 10, null, false)],
    ]);
    const { reads, watch, on } = setup(agents, now);
    const silent = [on('silent'), on('silent')];
    const weak = on('weak');
    const alive = on('alive');
    const ended = [...silent, on('gone'), on('replaced'), on('row deleted')];
    expect(await watch.look()).toBe(5);
    // One read for all, each agent once.
    expect(reads).toHaveLength(1);
    expect(reads[0]!.slice().sort()).toEqual(['alive', 'gone', 'replaced', 'row deleted', 'silent', 'weak']);
    for (const call of ended) expect(call.signal.reason).toBeInstanceOf(AgentGone);
    expect((silent[0]!.signal.reason as Error).message).toBe('the agent stopped reporting heartbeats during the call');
    for (const call of [weak, alive]) expect(call.signal.aborted).toBe(false);
    // The calls it ended are not read again.
    await watch.look();
    expect(reads[1]!.slice().sort()).toEqual(['alive', 'weak']);
  });

  it('a call that reaches the agent while the read is under way is not ended by it', async () => {
    const now = 10_000;
    let later: ReturnType<RunningCalls['open']> | undefined;
    const { watch, on } = setup(new Map([['a', agentNow(0)]]), now, { during: () => (later ??= on('a')) });
    const before = on('a');
    expect(await watch.look()).toBe(1);
    expect(before.signal.aborted).toBe(true);
    expect(later?.signal.aborted).toBe(false);
  });

  it('a read that fails ends nothing, and the next look tries again', async () => {
    let fail = true;
    const { watch, on } = setup(new Map([['a', agentNow(0)]]), 10_000, { fail: () => fail });
    const call = on('a');
    expect(await watch.look()).toBe(0);
    expect(call.signal.aborted).toBe(false);
    fail = false;
    expect(await watch.look()).toBe(1);
  });

  it('ends proxied requests too, once under way, each once', async () => {
    const now = 10_000;
    const { proxied, watch } = setup(new Map([['silent', agentNow(0)], ['alive', agentNow(now)]]), now);
    const aborted: Error[] = [];
    const onSilent = proxied.add('silent');
    onSilent.abort = (reason) => aborted.push(reason);
    const notYetSent = proxied.add('silent');
    const onAlive = proxied.add('alive');
    onAlive.abort = (reason) => aborted.push(reason);
    expect(await watch.look()).toBe(1);
    expect(aborted).toHaveLength(1);
    expect(aborted[0]).toBeInstanceOf(AgentGone);
    expect(aborted[0]!.message).toBe('the agent stopped reporting heartbeats during the call');
    expect(proxied.size).toBe(2);
    proxied.delete(notYetSent);
    proxied.delete(onAlive);
    expect(await watch.look()).toBe(0);
    expect(proxied.size).toBe(0);
  });

  it('looks at half the inactive timeout, within 100 ms and 5 s', () => {
    expect([watchIntervalMs(50), watchIntervalMs(300), watchIntervalMs(30_000)]).toEqual([100, 150, 5_000]);
  });
});

