// The MCP front door's pure parts: the event-stream reader, what ends a running call, cancels
// matched on token, endpoint and id, and the result the model reads on a refusal.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SseReader } from '../../src/mcp/sse.js';
import { RunningCalls, cancelKey } from '../../src/mcp/calls.js';
import { CallCancelled, McpMessageTooLarge } from '../../src/domain/failures.js';
import { agentAnswerCode, agentAnswerDetail, errorResult } from '../../src/mcp/results.js';
import { ToolLists } from '../../src/mcp/tool-lists.js';
import { ApiError } from '../../src/domain/errors.js';
import type { CancelNotice } from '../../src/domain/events.js';
import { FrontDoor, MAX_QUEUED_PROGRESS_BYTES, MAX_REMOTE_CANCELS, type Endpoint, type FrontDoorOptions } from '../../src/mcp/front-door.js';
import { MAX_CANCELS_IN_FLIGHT, MAX_CANCELS_IN_FLIGHT_PER_TOKEN, cancelRelay } from '../../src/mcp/cancel-relay.js';
import { createLogger } from '../../src/logger.js';
import { Turns } from '../../src/mcp/turns.js';

describe('SseReader', () => {
  const read = (chunks: string[], max = 1024) => {
    const reader = new SseReader(max);
    return chunks.flatMap((c) => reader.push(Buffer.from(c, 'utf8')));
  };

  it('yields the data of each event, multi-line data joined, comments and other fields skipped', () => {
    expect(read([': keepalive\n\nevent: message\nid: 7\ndata: {"a":1}\n\n', 'data: x\ndata: y\n\n', 'retry: 10\n\n'])).toEqual(['{"a":1}', 'x\ny']);
  });

  it('does not depend on where the chunks are cut, nor on the line ending', () => {
    const stream = 'event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{"é":"ü"}}\r\n\r\ndata:second\n\ndata: third\r\r\n';
    const whole = read([stream]);
    expect(whole).toEqual(['{"jsonrpc":"2.0","id":1,"result":{"é":"ü"}}', 'second', 'third']);
    const bytes = Buffer.from(stream, 'utf8');
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 8 }), (cuts) => {
        const at = [0, ...cuts.sort((a, b) => a - b), bytes.length];
        const reader = new SseReader(1024);
        const events = at.slice(1).flatMap((end, i) => reader.push(bytes.subarray(at[i], end)));
        expect(events).toEqual(whole);
      }),
    );
  });

  it('refuses an event larger than its bound', () => {
    expect(() => read([`data: ${'x'.repeat(2000)}`], 1024)).toThrow(McpMessageTooLarge);
    // Many lines of one event count together.
    expect(() => read(['data: aaaaaaaaaa\n'.repeat(200)], 1024)).toThrow(McpMessageTooLarge);
    expect(read(['data: aaaaaaaaaa\n\n'.repeat(200)], 1024)).toHaveLength(200);
    // A line with no end, and comments, count too.
    expect(() => read([`: ${'x'.repeat(2000)}`], 1024)).toThrow(McpMessageTooLarge);
  });

  it('costs time linear in the bytes, however finely the agent cuts them', () => {
    // A hostile agent trickles one long line in small pieces: a reader that looks at its whole
    // buffer on every piece does quadratic work (hundreds of times the one-piece cost here).
    const line = Buffer.from(`data: ${'x'.repeat(4 * 1024 * 1024)}\n\n`, 'latin1');
    const cost = (pieceBytes: number) => {
      const reader = new SseReader(8 * 1024 * 1024);
      const started = performance.now();
      let events: string[] = [];
      for (let at = 0; at < line.length; at += pieceBytes) events = events.concat(reader.push(line.subarray(at, at + pieceBytes)));
      expect(events).toHaveLength(1);
      return performance.now() - started;
    };
    cost(64 * 1024); // warm-up
    const whole = Math.max(cost(64 * 1024), 2);
    const trickled = cost(1024);
    expect(trickled / whole).toBeLessThan(20);
  });

  it('reads every event of a chunk that holds many', () => {
    const many = 'data: {}\n\n'.repeat(50_000);
    expect(read([many], 1024)).toHaveLength(50_000);
  });
});

describe('RunningCalls', () => {
  it('a cancel reaches the one call of the same token, endpoint and id, and no other', () => {
    const calls = new RunningCalls();
    const mine = calls.open(cancelKey('conn:t1', 'w?agent=', 3));
    const otherToken = calls.open(cancelKey('conn:t2', 'w?agent=', 3));
    const otherId = calls.open(cancelKey('conn:t1', 'w?agent=', '3'));
    expect(calls.cancel(cancelKey('conn:t1', 'w?agent=', 3), 'stop')).toBe('cancelled');
    expect(mine.signal.reason).toBeInstanceOf(CallCancelled);
    expect(otherToken.signal.aborted).toBe(false);
    expect(otherId.signal.aborted).toBe(false);
    expect(calls.cancel(cancelKey('conn:t1', 'w?agent=main', 3), 'stop')).toBe('none');
  });

  it('an ambiguous cancel (two clients of one token used the same id) cancels none', () => {
    const calls = new RunningCalls();
    const a = calls.open(cancelKey('conn:t', 'w?agent=', 1));
    const b = calls.open(cancelKey('conn:t', 'w?agent=', 1));
    expect(calls.cancel(cancelKey('conn:t', 'w?agent=', 1), '')).toBe('ambiguous');
    expect(a.signal.aborted || b.signal.aborted).toBe(false);
    b.close();
    expect(calls.cancel(cancelKey('conn:t', 'w?agent=', 1), '')).toBe('cancelled');
    expect(a.signal.aborted).toBe(true);
    a.close();
    expect(calls.size).toBe(0);
  });
});

describe('McpExchange.cancel: here, or sent to the other replicas', () => {
  const setup = () => {
    const calls = new RunningCalls();
    const sent: CancelNotice[][] = [];
    // Only what a cancel uses: the running calls and where the unmatched ones go.
    const options = { calls, cancelElsewhere: (_token: string, n: readonly CancelNotice[]) => void sent.push([...n]) } as Partial<FrontDoorOptions> as FrontDoorOptions;
    const endpoint = { tokenKey: 'api:t1', endpointKey: 'ws?agent=', log: createLogger('silent') } as Partial<Endpoint> as Endpoint;
    const exchange = () => new FrontDoor(options).exchange(endpoint);
    const key = (id: string | number) => cancelKey('api:t1', 'ws?agent=', id);
    return { calls, sent, exchange, key };
  };

  it('a call running here is cancelled here; nothing is sent on', () => {
    const { calls, sent, exchange, key } = setup();
    const call = calls.open(key(1));
    const e = exchange();
    e.cancel(1, 'stop');
    e.sendUnmatchedCancels();
    expect(call.signal.reason).toBeInstanceOf(CallCancelled);
    expect(sent).toEqual([]);
  });

  it("a request's cancels that match nothing here are sent on together, once, with their keys and reasons", () => {
    const { sent, exchange, key } = setup();
    const e = exchange();
    e.cancel('abc', 'stop');
    e.cancel(7, '');
    e.sendUnmatchedCancels();
    e.sendUnmatchedCancels();
    expect(sent).toEqual([
      [
        { key: key('abc'), reason: 'stop' },
        { key: key(7), reason: '' },
      ],
    ]);
  });

  it('an ambiguous cancel, or one for a request of the same POST, is not sent on', () => {
    const { calls, sent, exchange, key } = setup();
    calls.open(key(1));
    calls.open(key(1));
    const e = exchange();
    e.cancel(1, '');
    e.expect([2]);
    e.cancel(2, '');
    e.sendUnmatchedCancels();
    expect(sent).toEqual([]);
  });

  it(`one request sends at most ${MAX_REMOTE_CANCELS} cancels on`, () => {
    const { sent, exchange } = setup();
    const e = exchange();
    for (let id = 0; id < MAX_REMOTE_CANCELS + 5; id += 1) e.cancel(id, '');
    e.sendUnmatchedCancels();
    expect(sent.map((n) => n.length)).toEqual([MAX_REMOTE_CANCELS]);
  });
});

describe('McpExchange.admitProgress: what may queue behind a caller that is not reading', () => {
  it(`admits everything while the caller takes writes, then at most ${MAX_QUEUED_PROGRESS_BYTES} bytes per response until it takes them again`, () => {
    let congested = false;
    const endpoint = { congested: () => congested, log: createLogger('silent') } as Partial<Endpoint> as Endpoint;
    const e = new FrontDoor({} as FrontDoorOptions).exchange(endpoint);
    const size = 100 * 1024;
    for (let i = 0; i < 100; i += 1) expect(e.admitProgress(size)).toBe(true);
    congested = true;
    const admitted = Array.from({ length: 20 }, () => e.admitProgress(size)).filter(Boolean).length;
    expect(admitted).toBe(Math.floor(MAX_QUEUED_PROGRESS_BYTES / size));
    expect(e.admitProgress(1)).toBe(true); // what still fits
    congested = false;
    expect(e.admitProgress(size)).toBe(true);
    congested = true;
    expect(Array.from({ length: 20 }, () => e.admitProgress(size)).filter(Boolean).length).toBe(Math.floor(MAX_QUEUED_PROGRESS_BYTES / size));
  });
});

describe('cancelRelay', () => {
  const pendingSends = () => {
    const pending: Array<() => void> = [];
    const sent: string[] = [];
    const relay = cancelRelay((notices) => {
      sent.push(notices[0]!.key);
      return new Promise((resolve) => pending.push(() => resolve(notices.length)));
    }, createLogger('silent'));
    return { pending, sent, relay };
  };

  it(`keeps at most ${MAX_CANCELS_IN_FLIGHT_PER_TOKEN} records in flight per token: one tenant's flood does not crowd out another's`, async () => {
    const { pending, sent, relay } = pendingSends();
    for (let i = 0; i < MAX_CANCELS_IN_FLIGHT_PER_TOKEN + 5; i += 1) relay('conn:flooder', [{ key: 'flood', reason: '' }]);
    relay('conn:other', [{ key: 'other', reason: '' }]);
    expect(sent.filter((k) => k === 'flood')).toHaveLength(MAX_CANCELS_IN_FLIGHT_PER_TOKEN);
    expect(sent).toContain('other');
    for (const done of pending.splice(0)) done();
    await new Promise((r) => setImmediate(r));
    relay('conn:flooder', [{ key: 'flood', reason: '' }]);
    expect(sent.filter((k) => k === 'flood')).toHaveLength(MAX_CANCELS_IN_FLIGHT_PER_TOKEN + 1);
  });

  it(`keeps at most ${MAX_CANCELS_IN_FLIGHT} records in flight for the process, all tokens together`, () => {
    const { sent, relay } = pendingSends();
    for (let i = 0; i < MAX_CANCELS_IN_FLIGHT + 3; i += 1) relay(`conn:t${i}`, [{ key: `k${i}`, reason: '' }]);
    expect(sent).toHaveLength(MAX_CANCELS_IN_FLIGHT);
  });

  it('a send that fails frees its place', async () => {
    let calls = 0;
    const relay = cancelRelay(async () => {
      calls += 1;
      throw new Error('database unavailable');
    }, createLogger('silent'));
    for (let i = 0; i < MAX_CANCELS_IN_FLIGHT_PER_TOKEN * 3; i += 1) {
      relay('conn:t', [{ key: 'k', reason: '' }]);
      await new Promise((r) => setImmediate(r));
    }
    expect(calls).toBe(MAX_CANCELS_IN_FLIGHT_PER_TOKEN * 3);
  });
});

describe('errorResult', () => {
  it('is a tool result with the hint, then the code and detail, and the error under _meta', () => {
    const error = new ApiError('AGENT_DISCONNECTED', 'the agent said goodbye 12 s ago', {
      workspaceId: 'w',
      agentId: 'a',
      agentStatus: 'disconnected',
      disconnectedSeconds: 12,
    });
    expect(errorResult(error)).toEqual({
      content: [
        {
          type: 'text',
          text:
            'The workspace agent is disconnected and cannot run tools; restart the workspace (stop it, then start it) and try again.\n' +
            'AGENT_DISCONNECTED: the agent said goodbye 12 s ago',
        },
      ],
      isError: true,
      _meta: { 'agentgate/error': { code: 'AGENT_DISCONNECTED', retryable: false, agentStatus: 'disconnected', disconnectedSeconds: 12 } },
    });
  });

  it('carries retryAfter when the gate set one, and nulls for what it did not learn', () => {
    const result = errorResult(new ApiError('DATABASE_UNAVAILABLE', 'the database could not be read in time', { retryAfter: 1 }));
    expect(result._meta).toEqual({ 'agentgate/error': { code: 'DATABASE_UNAVAILABLE', retryable: true, agentStatus: null, disconnectedSeconds: null, retryAfter: 1 } });
    // A code without a hint still says what happened.
    expect((result.content[0] as { text: string }).text).toMatch(/^agentgate cannot read its database/);
    expect((errorResult(new ApiError('OVERLOADED', 'too many waiters')).content[0] as { text: string }).text).toBe('Overloaded.\nOVERLOADED: too many waiters');
  });
});

describe('agentAnswerCode', () => {
  it.each([
    [413, 'PAYLOAD_TOO_LARGE'],
    [429, 'RATE_LIMITED'],
    [404, 'NOT_FOUND'],
    [405, 'NOT_FOUND'],
    [400, 'INVALID_REQUEST'],
    [401, 'INVALID_REQUEST'],
    [403, 'INVALID_REQUEST'],
    [406, 'INVALID_REQUEST'],
    [200, 'INVALID_REQUEST'],
    [500, 'AGENT_UNREACHABLE'],
    [503, 'AGENT_UNREACHABLE'],
  ])('HTTP %i from the agent is %s', (status, code) => {
    expect(agentAnswerCode(status)).toBe(code);
  });

  it('says when repeating cannot help, and only then', () => {
    expect(agentAnswerDetail('PAYLOAD_TOO_LARGE', 'said')).toBe('said; repeating the same call will not help');
    expect(agentAnswerDetail('AGENT_UNREACHABLE', 'said')).toBe('said');
  });
});

describe('ToolLists', () => {
  const tools = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `t${i}`, inputSchema: { type: 'object' as const } }));
  const ADMIN = null;

  it('recalls by agent, else by the selection that last reached an agent', () => {
    const lists = new ToolLists();
    lists.remember({ workspaceId: 'w', agentName: undefined, agentId: 'a', ownerId: 'o' }, tools(2));
    expect(lists.recall({ workspaceId: 'w', agentName: undefined, agentId: 'a' }, ADMIN)).toHaveLength(2);
    expect(lists.recall({ workspaceId: 'w', agentName: undefined, agentId: undefined }, ADMIN)).toHaveLength(2);
    expect(lists.recall({ workspaceId: 'w', agentName: 'other', agentId: undefined }, ADMIN)).toBeUndefined();
    expect(lists.recall({ workspaceId: 'v', agentName: undefined, agentId: 'b' }, ADMIN)).toBeUndefined();
  });

  it("recalls a list for an admin or the owner it was kept for, never for another owner", () => {
    const lists = new ToolLists();
    lists.remember({ workspaceId: 'w', agentName: undefined, agentId: 'a', ownerId: 'o' }, tools(2));
    for (const agentId of ['a', undefined]) {
      const where = { workspaceId: 'w', agentName: undefined, agentId };
      expect(lists.recall(where, 'o')).toHaveLength(2);
      expect(lists.recall(where, ADMIN)).toHaveLength(2);
      expect(lists.recall(where, 'someone else')).toBeUndefined();
    }
  });

  it('is bounded: the least recently used lists go first', () => {
    const lists = new ToolLists({ max: 3 });
    for (let i = 0; i < 10; i += 1) lists.remember({ workspaceId: `w${i}`, agentName: undefined, agentId: `a${i}`, ownerId: 'o' }, tools(1));
    const kept = Array.from({ length: 10 }, (_, i) => lists.recall({ workspaceId: `w${i}`, agentName: undefined, agentId: `a${i}` }, ADMIN)).filter(Boolean);
    expect(kept).toHaveLength(3);
    expect(lists.recall({ workspaceId: 'w9', agentName: undefined, agentId: 'a9' }, ADMIN)).toBeDefined();
  });

  /** A list whose JSON is about `chars` characters of `c`. */
  const sized = (c: string, chars: number) => [{ name: 't', description: c.repeat(chars), inputSchema: { type: 'object' as const } }];
  const where = (i: number) => ({ workspaceId: `w${i}`, agentName: undefined, agentId: `a${i}`, ownerId: 'o' });

  it('bounds the bytes kept, each list counted once, in UTF-8 bytes rather than characters', () => {
    // Two lists of about 450 bytes fit in 1000 (each is kept once, not under two keys).
    const ascii = new ToolLists({ maxBytes: 1000 });
    ascii.remember(where(1), sized('x', 400));
    ascii.remember(where(2), sized('x', 400));
    expect(ascii.recall(where(1), ADMIN)).toBeDefined();
    expect(ascii.recall({ ...where(1), agentId: undefined }, ADMIN)).toBeDefined();
    expect(ascii.recall(where(2), ADMIN)).toBeDefined();
    // The same count of two-byte characters is about 850 bytes a list: the second puts the first out.
    const accented = new ToolLists({ maxBytes: 1000 });
    accented.remember(where(1), sized('é', 400));
    accented.remember(where(2), sized('é', 400));
    expect(accented.recall(where(1), ADMIN)).toBeUndefined();
    expect(accented.recall({ ...where(1), agentId: undefined }, ADMIN)).toBeUndefined();
    expect(accented.recall(where(2), ADMIN)).toBeDefined();
  });
});

describe('Turns', () => {
  it('lets `size` holders in at once, hands a released turn to the first waiter, and drops a waiter whose signal aborts', async () => {
    const turns = new Turns(2);
    const none = new AbortController().signal;
    const a = await turns.take(none);
    const b = await turns.take(none);
    const order: string[] = [];
    const leaving = new AbortController();
    const c = turns.take(none).then((release) => (order.push('c'), release));
    const gone = turns.take(leaving.signal).then(
      () => order.push('gone got a turn'),
      (error: unknown) => order.push(`gone: ${(error as Error).message}`),
    );
    const d = turns.take(none).then((release) => (order.push('d'), release));
    leaving.abort(new Error('left'));
    await gone;
    a();
    a(); // a second release frees nothing more
    const releaseC = await c;
    expect(order).toEqual(['gone: left', 'c']);
    b();
    const releaseD = await d;
    expect(order).toEqual(['gone: left', 'c', 'd']);
    releaseC();
    releaseD();
    // Both free again: two take at once without waiting.
    await Promise.all([turns.take(none), turns.take(none)]);
    await expect(turns.take(AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
  });
});
