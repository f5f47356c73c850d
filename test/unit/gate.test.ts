// The gate's loop on rows and a transport of the test's own (no database, no socket): a rebuild
// during the dial, twice (WORKSPACE_CHANGED, contract §5 step 11), degraded mode (step 9), the
// failed-dial memory on a clock the test moves (step 8), and the gate counting its own outcomes.
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { AgentRead, CurrentAgent } from '../../src/db/gate-read.js';
import { DatabaseUnavailable, DialFailure } from '../../src/domain/failures.js';
import { ApiError } from '../../src/domain/errors.js';
import { Gate } from '../../src/gate/gate.js';
import type { GateReads } from '../../src/gate/fresh-read.js';
import { Metrics } from '../../src/metrics.js';
import type { AgentConnection, AgentTarget, AgentTransport } from '../../src/transport/agent-transport.js';

const WORKSPACE = '00000000-0000-4000-8000-000000000001';
const OWNER = '00000000-0000-4000-8000-0000000000aa';
const NOW = 1_700_000_000_000;

function agent(id: string, lastConnectedAt: number | null = NOW - 1_000): CurrentAgent {
  return {
    id,
    buildId: `build-${id}`,
    name: 'main',
    address: `http://agent-${id}.test`,
    createdAt: NOW - 60_000,
    firstConnectedAt: NOW - 60_000,
    lastConnectedAt,
    disconnectedAt: null,
    connectionTimeoutSeconds: 120,
  };
}

/** Rows the test sets: each read returns `current`, or throws when the database is "down". */
class Rows implements GateReads {
  readonly minBudgetMs = 1;
  current: CurrentAgent | undefined = agent('a');
  down = false;
  reads = 0;
  /** Called as the re-read after a dial begins: a test changes the rows there (a rebuild during the dial). */
  duringDial: (() => void) | undefined;

  #answer(): AgentRead {
    if (this.down) throw new DatabaseUnavailable('the test cut the database');
    if (!this.current) return { kind: 'no_agent', ownerId: OWNER, nowMs: NOW };
    return { kind: 'agent', ownerId: OWNER, nowMs: NOW, agent: this.current };
  }

  read(): Promise<AgentRead> {
    this.reads += 1;
    return Promise.resolve().then(() => this.#answer());
  }

  recheck(): Promise<AgentRead> {
    this.reads += 1;
    return Promise.resolve().then(() => {
      this.duringDial?.();
      return this.#answer();
    });
  }
}

class FakeConnection implements AgentConnection {
  readonly basePath = '';
  readonly lostListeners: Array<(reason: Error) => void> = [];
  readonly dialedAt = new Date(NOW);
  readonly dialMs = 1;
  closes = 0;
  constructor(readonly target: AgentTarget) {}
  get agentId() {
    return this.target.agentId;
  }
  get closed() {
    return this.closes > 0;
  }
  sign() {
    return 'signed';
  }
  request(): never {
    throw new Error('not used');
  }
  upgrade(): never {
    throw new Error('not used');
  }
  onLost(listener: (reason: Error) => void) {
    this.lostListeners.push(listener);
    return () => undefined;
  }
  close() {
    this.closes += 1;
    return Promise.resolve();
  }
  destroy() {
    return this.close();
  }
}

/** Opens a fake connection, or fails as `fail` says. */
class Transport implements AgentTransport {
  opened: AgentTarget[] = [];
  connections: FakeConnection[] = [];
  fail: DialFailure | undefined;
  open(target: AgentTarget): Promise<AgentConnection> {
    this.opened.push(target);
    if (this.fail) return Promise.reject(this.fail);
    const conn = new FakeConnection(target);
    this.connections.push(conn);
    return Promise.resolve(conn);
  }
}

class TestClock {
  // Not 0: lru-cache takes a start time of 0 for "no time-to-live".
  ms = 1_000_000;
  now() {
    return this.ms;
  }
}

function gate(rows: Rows, transport: Transport, clock = new TestClock()) {
  const metrics = new Metrics({ processMetrics: false });
  const g = new Gate({
    reads: rows,
    transport,
    config: {
      dialTimeoutMs: 500,
      dbTimeoutMs: 200,
      dialBackoffMs: 5_000,
      disconnectGraceMs: 90_000,
      inactiveTimeoutMs: 60_000,
      maxConns: 100,
      connIdleMs: 60_000,
    },
    metrics,
    logger: pino({ level: 'silent' }),
    clock,
  });
  return { gate: g, metrics, clock };
}

const call = () => ({ workspaceId: WORKSPACE, ownerScope: null, signal: new AbortController().signal, log: pino({ level: 'silent' }) });

async function counted(metrics: Metrics): Promise<Record<string, number>> {
  const values = (await metrics.connTotal.get()).values;
  return Object.fromEntries(values.map((v) => [String(v.labels.code), v.value]));
}

async function refusal(promise: Promise<unknown>): Promise<ApiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

describe('the gate on rows and a transport of its own', () => {
  it('dials, then reuses the cached connection without a dial', async () => {
    const rows = new Rows();
    const transport = new Transport();
    const { gate: g, metrics } = gate(rows, transport);
    const first = await g.connect(call());
    expect(first).toMatchObject({ cached: false, degraded: false });
    first.lease.release();
    const second = await g.connect(call());
    expect(second).toMatchObject({ cached: true, degraded: false });
    second.lease.release();
    expect(transport.opened).toHaveLength(1);
    expect(await counted(metrics)).toEqual({ ok: 2 });
    await g.close();
  });

  it('an agent replaced during the dial: the call starts over and dials the new one', async () => {
    const rows = new Rows();
    const transport = new Transport();
    const { gate: g } = gate(rows, transport);
    rows.duringDial = () => {
      rows.duringDial = undefined;
      rows.current = agent('b');
    };
    // The re-read after the first dial sees b: that dial is thrown away, b is dialed and served.
    const success = await g.connect(call());
    expect(success.agent.id).toBe('b');
    expect(success.cached).toBe(false);
    success.lease.release();
    expect(transport.opened.map((t) => t.agentId)).toEqual(['a', 'b']);
    expect(rows.reads).toBe(4);
    expect(g.connections.size).toBe(1);
    await g.close();
  });

  it('replaced during both dials: WORKSPACE_CHANGED, and neither connection is kept', async () => {
    const rows = new Rows();
    const transport = new Transport();
    const { gate: g, metrics } = gate(rows, transport);
    let n = 0;
    rows.duringDial = () => {
      n += 1;
      rows.current = agent(`next-${n}`);
    };
    const error = await refusal(g.connect(call()));
    expect(error.code).toBe('WORKSPACE_CHANGED');
    expect(transport.opened).toHaveLength(2);
    expect(g.connections.size).toBe(0);
    expect(await counted(metrics)).toEqual({ WORKSPACE_CHANGED: 1 });
    await g.close();
  });

  it('degraded: the database down, a live cached connection serves as the last read said', async () => {
    const rows = new Rows();
    const transport = new Transport();
    const { gate: g, metrics } = gate(rows, transport);
    (await g.connect(call())).lease.release();
    rows.down = true;
    const degraded = await g.connect(call());
    expect(degraded).toMatchObject({ cached: true, degraded: true, ownerId: OWNER });
    expect(degraded.agent.id).toBe('a');
    degraded.lease.release();
    expect((await metrics.degradedAnswers.get()).values[0]?.value).toBe(1);
    // Confined to another owner: the snapshot is not shown, whatever is cached.
    const other = await refusal(g.connect({ ...call(), ownerScope: '00000000-0000-4000-8000-0000000000bb' }));
    expect(other.code).toBe('DATABASE_UNAVAILABLE');
    await g.close();
  });

  it('degraded: nothing cached (or a snapshot the database contradicted) is DATABASE_UNAVAILABLE', async () => {
    const rows = new Rows();
    const transport = new Transport();
    const { gate: g } = gate(rows, transport);
    rows.down = true;
    expect((await refusal(g.connect(call()))).code).toBe('DATABASE_UNAVAILABLE');
    rows.down = false;
    (await g.connect(call())).lease.release();
    // The workspace loses its agent (a stop): the snapshot goes, and its connection with it.
    rows.current = undefined;
    expect((await refusal(g.connect(call()))).code).toBe('WORKSPACE_HAS_NO_AGENT');
    expect(g.connections.size).toBe(0);
    rows.down = true;
    expect((await refusal(g.connect(call()))).code).toBe('DATABASE_UNAVAILABLE');
    await g.close();
  });

  it('a failed dial is remembered until the backoff passes on the clock, then dialed again', async () => {
    const rows = new Rows();
    const transport = new Transport();
    const { gate: g, clock } = gate(rows, transport);
    transport.fail = new DialFailure('unreachable', 'the agent refused the connection');
    expect((await refusal(g.connect(call()))).code).toBe('AGENT_UNREACHABLE');
    const remembered = await refusal(g.connect(call()));
    expect(remembered.code).toBe('AGENT_UNREACHABLE');
    expect(remembered.detail).toContain('remembered');
    expect(remembered.extras.retryAfter).toBe(5);
    expect(transport.opened).toHaveLength(1);
    clock.ms += 4_999;
    expect((await refusal(g.connect(call()))).detail).toContain('remembered');
    clock.ms += 2;
    transport.fail = undefined;
    (await g.connect(call())).lease.release();
    expect(transport.opened).toHaveLength(2);
    await g.close();
  });

  it('a heartbeat since the failure (a new last_connected_at) dials at once', async () => {
    const rows = new Rows();
    const transport = new Transport();
    const { gate: g } = gate(rows, transport);
    transport.fail = new DialFailure('timeout', 'the agent did not answer its health check in time');
    expect((await refusal(g.connect(call()))).code).toBe('AGENT_DIAL_TIMEOUT');
    rows.current = agent('a', NOW);
    transport.fail = undefined;
    (await g.connect(call())).lease.release();
    expect(transport.opened).toHaveLength(2);
    await g.close();
  });

  it('a connection its transport reports lost leaves the cache at once, and the gate says so', async () => {
    const rows = new Rows();
    const transport = new Transport();
    const { gate: g } = gate(rows, transport);
    const lost: string[] = [];
    g.onConnectionLost((target, reason) => lost.push(`${target.agentId}: ${reason.message}`));
    (await g.connect(call())).lease.release();
    expect(g.connections.size).toBe(1);
    for (const listener of transport.connections[0]!.lostListeners) listener(new Error('the tunnel closed'));
    expect(g.connections.size).toBe(0);
    expect(lost).toEqual(['a: the tunnel closed']);
    // The next call dials anew.
    (await g.connect(call())).lease.release();
    expect(transport.opened).toHaveLength(2);
    await g.close();
  });
});
