// The soak run (issue 8): `npm run soak -- --minutes N`, never part of `npm test`.
//
// The gate runs as its own process (`agentgate serve`, compiled), its database connections
// through a fault proxy, so that its RSS and handles are its own. Around it: many workspaces
// whose agents heartbeat, die (killed, or saying goodbye), freeze and come back (the same agent,
// or a rebuild with a new one); chat callers at a steady rate (`POST .../conn` and proxied tool
// calls); and a database fault every few seconds (cut, blackhole, latency, reset in flight).
// It prints a line per interval and a summary, and fails when the gate died, a call outlived its
// bound (contract §5 step 9), an answer broke contract §6, or memory or handles grew without bound.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createHistogram, monitorEventLoopDelay, performance, type RecordableHistogram } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { Agent as HttpClient, request } from 'undici';
import { afterAll, expect, it } from 'vitest';
import { freePort } from '../../src/db/embedded.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { CLI } from '../support/process.js';
import { FakeAgent, RealAgent } from './agents.js';
import { classifyAnswer, judgeGrowth, type GrowthVerdict, type Point } from './criteria.js';

// ---- settings ----------------------------------------------------------------------------

const num = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number (got "${raw}")`);
  return value;
};

const MINUTES = num('SOAK_MINUTES', 1);
const DURATION_MS = Math.round(MINUTES * 60_000);
const WORKSPACES = num('SOAK_WORKSPACES', 200);
const REAL_AGENTS = Math.min(num('SOAK_REAL_AGENTS', 4), WORKSPACES);
const RATE = num('SOAK_RATE', 30); // chat calls per second
// With 200 workspaces: about 70 heartbeats and 30 chat calls a second, a moderate load for two cores.
const HEARTBEAT_MS = num('SOAK_HEARTBEAT_MS', 3_000);
const SLACK_MS = num('SOAK_SLACK_MS', 1_000);

// The gate's bounds, short so that a soak of minutes sees many of each.
const DIAL_MS = 1_000;
const DB_MS = 500;
const HEADERS_MS = 1_500;
const GATE_ENV = {
  AGENTGATE_DIAL_TIMEOUT_MS: String(DIAL_MS),
  AGENTGATE_DB_TIMEOUT_MS: String(DB_MS),
  AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: String(HEADERS_MS),
  // Three missed heartbeats make an agent silent; three more make the silence a strong signal.
  AGENTGATE_INACTIVE_TIMEOUT_MS: String(3 * HEARTBEAT_MS),
  AGENTGATE_DISCONNECT_GRACE_MS: String(3 * HEARTBEAT_MS),
  AGENTGATE_DIAL_BACKOFF_MS: '2000',
  AGENTGATE_CONN_IDLE_MS: '20000',
  AGENTGATE_SHUTDOWN_GRACE_MS: '3000',
  LOG_LEVEL: 'warn',
};

/** contract §5 step 9: dial bound + 2 x database bound; a proxied call adds the headers timeout. */
const CONN_BOUND_MS = DIAL_MS + 2 * DB_MS + SLACK_MS;
const PROXY_BOUND_MS = CONN_BOUND_MS + HEADERS_MS;
/** The driver gives up on any request after this: nothing it sends can hang the run. */
const HARD_CAP_MS = PROXY_BOUND_MS + 10_000;
const MAX_IN_FLIGHT = 400;

const WARMUP_MS = Math.max(15_000, 0.2 * DURATION_MS);
const SAMPLE_MS = Math.min(30_000, Math.max(2_000, Math.round(DURATION_MS / 30 / 1000) * 1000));
const FAULT_START_MS = 10_000;
const FAULT_PERIOD_MS = 12_000;
const FAULT_MS = 3_000;
/** No fault starts in the last stretch: the run ends on a healthy database. */
const FAULT_TAIL_MS = 8_000;
const ALL_FAULTS = ['cut', 'blackhole', 'latency', 'resetInFlight'] as const;
type Fault = (typeof ALL_FAULTS)[number] | 'pass';
/** SOAK_FAULTS=cut,latency (or none) runs only those: for telling one finding from another. */
const FAULTS = ALL_FAULTS.filter((f) => (process.env.SOAK_FAULTS ?? ALL_FAULTS.join(',')).split(',').includes(f));

const ADMIN_TOKEN = `soak-admin-${randomUUID()}`;
const PROBE = path.resolve(import.meta.dirname, 'gate-probe.mjs');

// ---- output ------------------------------------------------------------------------------

const print = (line: string) => process.stdout.write(`${line}\n`);
const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
const ms = (us: number) => (us / 1000).toFixed(1);

// ---- the gate as a process ---------------------------------------------------------------

interface ProbeReply {
  rss: number;
  heapUsed: number;
  external: number;
  resources: Record<string, number>;
  lagMaxMs: number;
}

interface LogTally {
  byMessage: Map<string, number>;
  recent: string[];
  errors: string[];
}

interface GateProcess {
  url: string;
  child: ChildProcess;
  pid: number;
  logs: LogTally;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  exited: Promise<void>;
  probe(): Promise<ProbeReply | undefined>;
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

function tallyLine(logs: LogTally, line: string): void {
  logs.recent.push(line);
  if (logs.recent.length > 30) logs.recent.shift();
  let entry: { level?: number; msg?: string; err?: { message?: string } } | undefined;
  try {
    entry = line.startsWith('{') ? (JSON.parse(line) as typeof entry) : undefined;
  } catch {
    entry = undefined;
  }
  const key = entry ? `${LEVELS[entry.level ?? 0] ?? entry.level} ${entry.msg ?? ''}` : `text ${line.slice(0, 80)}`;
  // Distinct messages are few; a cap keeps a pathological log from growing the driver.
  if (logs.byMessage.has(key) || logs.byMessage.size < 100) logs.byMessage.set(key, (logs.byMessage.get(key) ?? 0) + 1);
  if ((entry?.level ?? 0) >= 50 && logs.errors.length < 10) logs.errors.push(line.slice(0, 600));
}

async function startGate(databaseUrl: string): Promise<GateProcess> {
  const child = spawn(process.execPath, ['--import', pathToFileURL(PROBE).href, CLI, 'serve'], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: databaseUrl,
      HOST: '127.0.0.1',
      PORT: '0',
      AGENTGATE_ADMIN_TOKEN: ADMIN_TOKEN,
      ...GATE_ENV,
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const logs: LogTally = { byMessage: new Map(), recent: [], errors: [] };
  const probes = new Map<number, (reply: ProbeReply) => void>();
  let nextProbe = 0;
  child.on('message', (m: { type?: string; id?: number } & ProbeReply) => {
    if (m.type === 'probe' && m.id !== undefined) probes.get(m.id)?.(m);
  });
  const gate: GateProcess = {
    url: '',
    child,
    pid: child.pid ?? 0,
    logs,
    exit: undefined,
    exited: new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        gate.exit = { code, signal };
        resolve();
      }),
    ),
    probe: async () => {
      if (gate.exit || !child.connected) return undefined;
      const id = nextProbe++;
      const reply = new Promise<ProbeReply>((resolve) => probes.set(id, resolve));
      child.send({ type: 'probe', id });
      // A gate too busy to answer in 2 s gives a sample without its own figures.
      const answer = await Promise.race([reply, sleep(2_000).then(() => undefined)]);
      probes.delete(id);
      return answer;
    },
  };
  const listening = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m?.[1]) resolve(m[1]);
      tallyLine(logs, line);
    });
    createInterface({ input: child.stderr! }).on('line', (line) => tallyLine(logs, line));
    void gate.exited.then(() => reject(new Error(`the gate exited at start: ${logs.recent.join('\n')}`)));
  });
  gate.url = await Promise.race([listening, sleep(60_000).then(() => Promise.reject(new Error('the gate did not start within 60 s')))]);
  return gate;
}

/** The process's RSS, open file descriptors and CPU time so far, as the kernel counts them (Linux). */
async function procStats(pid: number): Promise<{ rss: number | undefined; fds: number | undefined; cpuMs: number | undefined }> {
  const [status, fds, stat] = await Promise.all([
    readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined),
    readdir(`/proc/${pid}/fd`).catch(() => undefined),
    readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined),
  ]);
  const kb = status ? /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] : undefined;
  // utime and stime, the 14th and 15th fields, in clock ticks (100 a second on Linux); the
  // command name before them may hold spaces, hence the split after its closing parenthesis.
  const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = fields ? Number(fields[11]) + Number(fields[12]) : NaN;
  return { rss: kb ? Number(kb) * 1024 : undefined, fds: fds?.length, cpuMs: Number.isFinite(ticks) ? ticks * 10 : undefined };
}

// ---- the run -----------------------------------------------------------------------------

type Kind = 'conn' | 'proxy GET' | 'proxy POST' | 'heartbeat' | 'goodbye' | 'build';
type WsState = 'alive' | 'dead' | 'frozen';

interface Ws {
  id: string;
  real: boolean;
  token: string;
  fake?: FakeAgent;
  agent?: RealAgent;
  root?: string;
  state: WsState;
  nextEventAt: number;
  busy: boolean;
  nextHeartbeatAt: number;
  heartbeating: boolean;
}

interface Sample {
  t: number;
  rss: number;
  heapUsed: number | undefined;
  fds: number | undefined;
  handles: number | undefined;
  resources: Record<string, number> | undefined;
  lagMaxMs: number | undefined;
  conns: number | undefined;
  cpuMs: number | undefined;
}

interface Violation {
  what: string;
  at: number;
  kind?: Kind;
  outcome?: string;
  ms?: number;
  fault?: Fault;
  route?: string;
  error?: string;
}

const cleanups: Array<() => void> = [];
process.on('exit', () => cleanups.forEach((fn) => fn()));

let database: TestDatabase | undefined;
let proxy: FaultProxy | undefined;
let gate: GateProcess | undefined;
const workspaces: Ws[] = [];
const client = new HttpClient({ connections: MAX_IN_FLIGHT + 50, keepAliveTimeout: 4_000 });
const heartbeatClient = new HttpClient({ connections: 64, keepAliveTimeout: 4_000 });

afterAll(async () => {
  // Also reached when the test itself failed or timed out: nothing may outlive the run.
  if (gate && !gate.exit) gate.child.kill('SIGKILL');
  await Promise.all(
    workspaces.map(async (ws) => {
      await ws.fake?.down();
      if (ws.agent) {
        ws.agent.killNow();
        await ws.agent.kill();
      }
      if (ws.root) await RealAgent.removeRoot(ws.root);
    }),
  );
  await client.close();
  await heartbeatClient.close();
  await proxy?.close();
  await database?.drop();
}, 60_000);

it(`soak: ${MINUTES} min, ${WORKSPACES} workspaces, ${RATE} chat calls/s, database faults`, async () => {
  database = await createTestDatabase();
  const target = new URL(database.url);
  const faultProxy = (proxy = await startFaultProxy(target.hostname, Number(target.port || 5432)));
  const gateUrl = await startGate(faultProxy.urlFor(database.url)).then((g) => {
    gate = g;
    return g.url;
  });
  const theGate = gate!;
  cleanups.push(() => theGate.child.kill('SIGKILL'));
  // The run's clock starts once everything is set up (reset below).
  let started = performance.now();
  const now = () => performance.now() - started;

  // -- accounting --
  const histograms = new Map<string, RecordableHistogram>();
  const intervalCounts = new Map<string, number>();
  const violations: Violation[] = [];
  let violationCount = 0;
  const violate = (v: Violation) => {
    violationCount += 1;
    if (violations.length < 25) violations.push(v);
  };
  const events = new Map<string, number>();
  const count = (event: string) => events.set(event, (events.get(event) ?? 0) + 1);
  let fault: Fault = 'pass';
  let inFlight = 0;
  let skipped = 0;
  let sent = 0;
  let running = true;

  const record = (kind: Kind, outcome: string, elapsedMs: number) => {
    const key = `${kind}\t${outcome}`;
    let h = histograms.get(key);
    if (!h) histograms.set(key, (h = createHistogram()));
    h.record(Math.max(1, Math.round(elapsedMs * 1000)));
    intervalCounts.set(outcome, (intervalCounts.get(outcome) ?? 0) + 1);
  };

  /** One request to the gate, classified, timed and checked against its bound. */
  const call = async (kind: Kind, method: 'GET' | 'POST' | 'PUT', route: string, token: string, body?: unknown): Promise<{ status: number; json: unknown } | undefined> => {
    const faultAtStart = fault;
    const t0 = performance.now();
    const bound = kind === 'conn' ? CONN_BOUND_MS : kind.startsWith('proxy') ? PROXY_BOUND_MS : undefined;
    let outcome: string;
    let defect: string | undefined;
    let result: { status: number; json: unknown } | undefined;
    let errorText: string | undefined;
    try {
      const res = await request(gateUrl + route, {
        method,
        dispatcher: kind === 'heartbeat' || kind === 'goodbye' ? heartbeatClient : client,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(HARD_CAP_MS),
      });
      let text = '';
      let aborted = false;
      try {
        text = await res.body.text();
      } catch {
        aborted = true;
      }
      const c = classifyAnswer({ status: res.statusCode, headers: res.headers, text, proxied: kind.startsWith('proxy') });
      outcome = c.outcome;
      defect = c.defect;
      if (aborted) {
        outcome += ' (body aborted)';
        // contract §6: when the agent breaks mid-response the caller sees an incomplete response;
        // the gate's own answers are never cut.
        if (res.headers['x-agentgate-upstream'] !== 'agent') defect = 'a gate answer cut short';
      }
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      result = { status: res.statusCode, json };
    } catch (error) {
      const err = error as Error & { code?: string };
      outcome = `no answer (${err.name === 'TimeoutError' ? 'hard cap' : (err.code ?? err.name)})`;
      defect = 'no answer from the gate';
      errorText = err.message;
    }
    const elapsed = performance.now() - t0;
    record(kind, outcome, elapsed);
    // While the gate is down its death is the failure; its refused connections add nothing.
    const where = { at: now(), kind, outcome, ms: Math.round(elapsed), fault: faultAtStart, route: `${method} ${route.replace(/[0-9a-f-]{36}/, ':id')}` };
    if (defect && !theGate.exit) violate({ what: defect, ...where, error: errorText });
    if (bound !== undefined && elapsed > bound && !theGate.exit) {
      violate({ what: `outlived its bound of ${bound} ms`, ...where });
    }
    return result;
  };

  /** Set-up calls: a 503 (a gate just started, a busy machine) is retried a few times. */
  const admin = async (method: 'GET' | 'POST' | 'PUT', route: string, body?: unknown) => {
    for (let attempt = 1; ; attempt += 1) {
      const res = await request(gateUrl + route, {
        method,
        dispatcher: client,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify(body ?? {}),
        signal: AbortSignal.timeout(HARD_CAP_MS),
      });
      const json = (await res.body.json()) as Record<string, unknown>;
      if (res.statusCode !== 503 || attempt === 10) return { status: res.statusCode, json };
      print(`[soak] set-up: ${method} ${route} answered 503 ${String(json.code)}; retrying`);
      await sleep(500);
    }
  };

  /** A new start build with one agent at `address`; its token. Throws when the gate refuses. */
  const build = async (ws: Ws, address: string): Promise<string> => {
    const r = await call('build', 'POST', `/workspaces/${ws.id}/builds`, ADMIN_TOKEN, {
      transition: 'start',
      agents: [{ name: 'main', address, connectionTimeoutSeconds: 30 }],
    });
    if (r?.status !== 201) throw new Error(`build refused: ${r?.status}`);
    const agents = (r.json as { agents: Array<{ token: string }> }).agents;
    return agents[0]!.token;
  };

  // -- set-up: workspaces, agents, a conn token for the chat callers --
  const tokenReply = await admin('POST', '/tokens', { name: 'soak chat server', scope: 'conn' });
  expect(tokenReply.status).toBe(201);
  const chatToken = String(tokenReply.json.token);
  const lifetime = (real: boolean) => Math.max(5_000, -Math.log(1 - Math.random()) * (real ? 60_000 : 40_000));
  const agentCli = { gate: gateUrl, heartbeatMs: HEARTBEAT_MS };

  const retried = async <T>(fn: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await fn();
      } catch (error) {
        if (attempt === 10) throw error;
        await sleep(500);
      }
    }
  };
  const setUp = async (i: number) => {
    const real = i < REAL_AGENTS;
    const ws: Ws = {
      id: randomUUID(),
      real,
      token: '',
      state: 'alive',
      nextEventAt: lifetime(real),
      busy: false,
      nextHeartbeatAt: Math.random() * HEARTBEAT_MS,
      heartbeating: false,
    };
    const put = await admin('PUT', `/workspaces/${ws.id}`, { ownerId: randomUUID(), name: `soak-${i}` });
    expect([200, 201]).toContain(put.status); // 200: a retry after a create that answered late
    if (real) {
      ws.root = await RealAgent.makeRoot();
      const port = await freePort();
      ws.token = await retried(() => build(ws, `http://127.0.0.1:${port}`));
      ws.agent = new RealAgent({ cliArgs: agentCli, token: ws.token, port, root: ws.root });
      const agent = ws.agent;
      cleanups.push(() => agent.killNow());
      await retried(() => agent.start());
    } else {
      const fake = (ws.fake = new FakeAgent());
      await fake.listen(0);
      ws.token = await retried(() => build(ws, fake.address));
    }
    workspaces.push(ws);
  };
  // A few at a time: quick, without a burst the gate would shed.
  for (let i = 0; i < WORKSPACES; i += 8) await Promise.all(Array.from({ length: Math.min(8, WORKSPACES - i) }, (_, k) => setUp(i + k)));
  started = performance.now();
  for (const ws of workspaces) ws.nextHeartbeatAt = Math.random() * HEARTBEAT_MS;
  let settled = false;

  // -- agents: heartbeats (fake agents) and lives: die, freeze, come back, get rebuilt --
  const heartbeat = (ws: Ws) => {
    ws.heartbeating = true;
    void call('heartbeat', 'POST', '/agent/heartbeat', ws.token).finally(() => {
      ws.heartbeating = false;
    });
  };

  const rebuild = async (ws: Ws) => {
    if (ws.real) {
      const port = await freePort();
      const token = await build(ws, `http://127.0.0.1:${port}`);
      const old = ws.agent;
      ws.token = token;
      ws.agent = new RealAgent({ cliArgs: agentCli, token, port, root: ws.root! });
      const agent = ws.agent;
      cleanups.push(() => agent.killNow());
      // The old agent goes away, with or without a goodbye, once the new build exists.
      await (Math.random() < 0.5 ? old?.stop() : old?.kill());
      await ws.agent.start();
    } else {
      const fresh = new FakeAgent();
      await fresh.listen(0);
      let token: string;
      try {
        token = await build(ws, fresh.address);
      } catch (error) {
        await fresh.down();
        throw error;
      }
      const old = ws.fake;
      const oldToken = ws.token;
      ws.fake = fresh;
      ws.token = token;
      if (ws.state === 'alive' && Math.random() < 0.5) await call('goodbye', 'POST', '/agent/disconnect', oldToken);
      await old?.down();
    }
    ws.state = 'alive';
  };

  const transition = async (ws: Ws) => {
    if (ws.state === 'alive') {
      const r = Math.random();
      if (r < 0.35) {
        count('killed');
        if (ws.real) await ws.agent!.kill();
        else await ws.fake!.down();
        ws.state = 'dead';
      } else if (r < 0.6) {
        count('goodbye');
        if (ws.real) await ws.agent!.stop();
        else {
          await call('goodbye', 'POST', '/agent/disconnect', ws.token);
          await ws.fake!.down();
        }
        ws.state = 'dead';
      } else if (r < 0.75) {
        count('frozen');
        if (ws.real) ws.agent!.freeze();
        else ws.fake!.freeze();
        ws.state = 'frozen';
      } else {
        count('rebuilt (agent alive)');
        await rebuild(ws);
      }
      // Down from a missed heartbeat or two (a weak signal) to well past the grace (a strong one).
      ws.nextEventAt = now() + (ws.state === 'alive' ? lifetime(ws.real) : HEARTBEAT_MS * (0.5 + Math.random() * 7));
      return;
    }
    if (ws.state === 'frozen') {
      count('thawed');
      if (ws.real) ws.agent!.thaw();
      else ws.fake!.thaw();
    } else if (Math.random() < 0.3) {
      count('rebuilt (agent dead)');
      await rebuild(ws);
    } else {
      count('came back');
      if (ws.real) await ws.agent!.start();
      else await ws.fake!.listen();
    }
    ws.state = 'alive';
    ws.nextHeartbeatAt = now();
    ws.nextEventAt = now() + lifetime(ws.real);
  };

  const lives = setInterval(() => {
    if (!running) return;
    const t = now();
    for (const ws of workspaces) {
      if (!ws.real && ws.state === 'alive' && !ws.heartbeating && !ws.busy && t >= ws.nextHeartbeatAt) {
        ws.nextHeartbeatAt = t + HEARTBEAT_MS;
        heartbeat(ws);
      }
      if (!settled || ws.busy || t < ws.nextEventAt) continue;
      ws.busy = true;
      transition(ws)
        .catch(() => {
          // A build refused during a database fault, or a port taken: try again shortly.
          count('transition retried');
          ws.nextEventAt = now() + 1_000;
        })
        .finally(() => {
          ws.busy = false;
        });
    }
  }, 50);

  // Two heartbeats each before the clock starts: the run begins with connected agents, not
  // with a burst of first dials the gate would shed.
  await sleep(2 * HEARTBEAT_MS + 1_000);
  started = performance.now();
  for (const ws of workspaces) {
    ws.nextHeartbeatAt = Math.random() * HEARTBEAT_MS;
    ws.nextEventAt = lifetime(ws.real);
  }
  intervalCounts.clear();
  settled = true;

  // -- chat callers at a steady rate --
  const chatCall = (ws: Ws) => {
    const base = `/workspaces/${ws.id}/conn`;
    const r = Math.random();
    if (r < 0.4) return call('conn', 'POST', base, chatToken);
    if (r < 0.8) {
      if (ws.real) return call('proxy GET', 'GET', `${base}/files?path=hello.txt`, chatToken);
      const p = Math.random();
      const tool = p < 0.91 ? `tool/read?q=${sent}` : p < 0.95 ? 'tool/slow' : p < 0.99 ? 'tool/fail' : 'tool/stuck';
      return call('proxy GET', 'GET', `${base}/${tool}`, chatToken);
    }
    if (ws.real) return call('proxy POST', 'POST', `${base}/exec`, chatToken, { command: 'echo', args: ['soak'] });
    return call('proxy POST', 'POST', `${base}/tool/run`, chatToken, { input: 'x'.repeat(1000) });
  };
  let credit = 0;
  let lastTick = performance.now();
  const load = setInterval(() => {
    const t = performance.now();
    credit += (RATE * (t - lastTick)) / 1000;
    lastTick = t;
    if (!running) return;
    for (; credit >= 1; credit -= 1) {
      if (inFlight >= MAX_IN_FLIGHT) {
        skipped += 1;
        continue;
      }
      inFlight += 1;
      sent += 1;
      const ws = workspaces[Math.floor(Math.random() * workspaces.length)]!;
      void chatCall(ws).finally(() => {
        inFlight -= 1;
      });
    }
  }, 20);

  // -- database faults --
  const stop = new AbortController();
  const faultsDone = (async () => {
    for (let k = 0; ; k += 1) {
      const at = FAULT_START_MS + k * FAULT_PERIOD_MS;
      if (FAULTS.length === 0 || at + FAULT_MS + FAULT_TAIL_MS > DURATION_MS) return;
      await sleep(Math.max(0, at - now()), undefined, { signal: stop.signal });
      const next = FAULTS[k % FAULTS.length]!;
      count(`fault ${next}`);
      fault = next;
      if (next === 'resetInFlight') faultProxy.resetInFlight();
      else faultProxy.setMode(next, next === 'latency' ? { latencyMs: 150 } : {});
      await sleep(FAULT_MS, undefined, { signal: stop.signal }).finally(() => {
        faultProxy.setMode('pass');
        fault = 'pass';
      });
    }
  })().catch(() => undefined);

  // -- samples: the gate's memory and handles over time --
  const samples: Sample[] = [];
  const driverLag = monitorEventLoopDelay({ resolution: 20 });
  driverLag.enable();
  const takeSample = async (): Promise<Sample | undefined> => {
    if (theGate.exit) return undefined;
    const [probe, proc, conns] = await Promise.all([
      theGate.probe(),
      procStats(theGate.pid),
      request(`${gateUrl}/metrics`, { dispatcher: client, signal: AbortSignal.timeout(2_000) })
        .then((r) => r.body.text())
        .then((text) => Number(/^agentgate_connections (\d+)/m.exec(text)?.[1] ?? NaN))
        .catch(() => undefined),
    ]);
    const rss = proc.rss ?? probe?.rss;
    if (rss === undefined) return undefined;
    const resources = probe?.resources;
    const sample: Sample = {
      t: now(),
      rss,
      heapUsed: probe?.heapUsed,
      fds: proc.fds,
      handles: resources ? Object.values(resources).reduce((a, b) => a + b, 0) : undefined,
      resources,
      lagMaxMs: probe?.lagMaxMs,
      conns: Number.isFinite(conns) ? conns : undefined,
      cpuMs: proc.cpuMs,
    };
    samples.push(sample);
    return sample;
  };
  let lastLine = performance.now();
  let sentAtLastLine = 0;
  let previous: Sample | undefined;
  const printInterval = (s: Sample | undefined) => {
    const cpu = s?.cpuMs !== undefined && previous?.cpuMs !== undefined ? `${Math.round(((s.cpuMs - previous.cpuMs) * 100) / (s.t - previous.t))}%` : '?';
    previous = s ?? previous;
    const t = performance.now();
    const rate = ((sent - sentAtLastLine) * 1000) / (t - lastLine);
    lastLine = t;
    sentAtLastLine = sent;
    const answers = [...intervalCounts.entries()].sort((a, b) => b[1] - a[1]).map(([o, n]) => `${o} ${n}`);
    intervalCounts.clear();
    const res = s?.resources ? Object.entries(s.resources).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ') : 'n/a';
    print(
      `[soak] ${String(Math.round((s?.t ?? now()) / 1000)).padStart(4)}s` +
        ` rss ${s ? mb(s.rss) : '?'} MB heap ${s?.heapUsed ? mb(s.heapUsed) : '?'} MB fds ${s?.fds ?? '?'}` +
        ` handles ${s?.handles ?? '?'} (${res}) conns ${s?.conns ?? '?'} | gate cpu ${cpu} lag ${s?.lagMaxMs?.toFixed(0) ?? '?'} ms,` +
        ` driver lag ${(driverLag.max / 1e6).toFixed(0)} ms, load ${os.loadavg()[0]!.toFixed(1)} | ${rate.toFixed(0)} calls/s in-flight ${inFlight} db ${fault} (${faultProxy.open} open)` +
        ` | ${answers.join(', ') || 'no answers'}`,
    );
    driverLag.reset();
  };

  print(
    `[soak] gate pid ${theGate.pid} at ${gateUrl}; ${WORKSPACES} workspaces (${REAL_AGENTS} real agents); ` +
      `bounds: conn ${CONN_BOUND_MS} ms, proxied ${PROXY_BOUND_MS} ms; a sample every ${SAMPLE_MS / 1000} s, warm-up ${Math.round(WARMUP_MS / 1000)} s`,
  );
  // The run: a sample per interval until the end, or until the gate dies.
  while (now() < DURATION_MS && !theGate.exit) {
    await Promise.race([sleep(Math.min(SAMPLE_MS, DURATION_MS - now())), theGate.exited]);
    if (theGate.exit) break;
    printInterval(await takeSample());
  }

  // -- wind down: stop the load, let calls in flight finish (each is capped), stop the gate --
  running = false;
  stop.abort();
  await faultsDone;
  clearInterval(load);
  clearInterval(lives);
  faultProxy.setMode('pass');
  const drainDeadline = performance.now() + HARD_CAP_MS + 5_000;
  while ((inFlight > 0 || workspaces.some((w) => w.busy || w.heartbeating)) && performance.now() < drainDeadline) await sleep(50);
  const died = theGate.exit;
  if (died) violate({ what: `the gate died (exit code ${died.code}, signal ${died.signal})`, at: now() });
  else {
    const last = await takeSample();
    if (last) printInterval(last);
    theGate.child.kill('SIGTERM');
    const stopped = await Promise.race([theGate.exited.then(() => true), sleep(Number(GATE_ENV.AGENTGATE_SHUTDOWN_GRACE_MS) + 10_000).then(() => false)]);
    if (!stopped) {
      theGate.child.kill('SIGKILL');
      violate({ what: 'the gate did not stop within its shutdown grace after SIGTERM', at: now() });
    } else if (theGate.exit?.code !== 0) {
      violate({ what: `the gate exited with code ${theGate.exit?.code} (signal ${theGate.exit?.signal}) after SIGTERM`, at: now() });
    }
  }

  // -- verdicts on resources --
  const series = (pick: (s: Sample) => number | undefined): Point[] =>
    samples.flatMap((s) => {
      const v = pick(s);
      return v === undefined ? [] : [{ t: s.t, v }];
    });
  const verdicts: Array<[string, GrowthVerdict]> = [
    ['rss MB', judgeGrowth(series((s) => mb(s.rss)), { warmupMs: WARMUP_MS, ratio: 1.1, slack: 24, cap: num('SOAK_MAX_RSS_MB', 512) })],
    ['fds', judgeGrowth(series((s) => s.fds), { warmupMs: WARMUP_MS, ratio: 1.1, slack: 32, cap: num('SOAK_MAX_FDS', 4_000) })],
    ['handles', judgeGrowth(series((s) => s.handles), { warmupMs: WARMUP_MS, ratio: 1.1, slack: 32, cap: num('SOAK_MAX_FDS', 4_000) })],
  ];
  for (const [name, v] of verdicts) if (!v.ok) violate({ what: `${name}: ${v.detail}`, at: now() });

  // -- summary --
  const elapsedS = now() / 1000;
  print('');
  print(`==== soak summary: ${(elapsedS / 60).toFixed(1)} min, ${WORKSPACES} workspaces (${REAL_AGENTS} with real agent processes), ${RATE} chat calls/s, heartbeats every ${HEARTBEAT_MS} ms`);
  print(`gate: dial ${DIAL_MS} ms, db ${DB_MS} ms, proxy headers ${HEADERS_MS} ms; bounds with ${SLACK_MS} ms slack: conn ${CONN_BOUND_MS} ms, proxied ${PROXY_BOUND_MS} ms`);
  print(`chat calls sent ${sent}, skipped at the in-flight cap ${skipped}`);
  print(`events: ${[...events.entries()].map(([e, n]) => `${e} ${n}`).join(', ')}`);
  print('answers (latency in ms, measured by the caller to the end of the body):');
  print(`  ${'kind'.padEnd(11)} ${'outcome'.padEnd(36)} ${'count'.padStart(7)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)}`);
  const rows = [...histograms.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  for (const [key, h] of rows) {
    const [kind, outcome] = key.split('\t') as [string, string];
    print(`  ${kind.padEnd(11)} ${outcome.padEnd(36)} ${String(h.count).padStart(7)} ${ms(h.percentile(50)).padStart(8)} ${ms(h.percentile(99)).padStart(8)} ${ms(h.max).padStart(8)}`);
  }
  print(`gate process (pid ${theGate.pid}), ${samples.length} samples, warm-up ${Math.round(WARMUP_MS / 1000)} s:`);
  for (const [name, v] of verdicts) print(`  ${name.padEnd(8)} ${v.ok ? 'ok  ' : 'FAIL'} ${v.detail}`);
  print('gate log lines (level message: count):');
  for (const [m, n] of [...theGate.logs.byMessage.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12)) print(`  ${m}: ${n}`);
  if (theGate.logs.errors.length > 0) {
    print('first error lines of the gate:');
    for (const line of theGate.logs.errors.slice(0, 5)) print(`  ${line}`);
  }
  if (died) {
    print('the gate\'s last lines:');
    for (const line of theGate.logs.recent) print(`  ${line.slice(0, 600)}`);
  }
  if (violationCount > 0) {
    print(`violations: ${violationCount}${violationCount > violations.length ? ` (first ${violations.length} shown)` : ''}`);
    for (const v of violations) {
      const detail = [v.route, v.outcome, v.ms !== undefined ? `${v.ms} ms` : undefined, v.fault ? `db ${v.fault}` : undefined, v.error].filter(Boolean).join(', ');
      print(`  at ${(v.at / 1000).toFixed(1)} s: ${v.what}${detail ? ` (${detail})` : ''}`);
    }
  }
  print(`verdict: ${violationCount === 0 ? 'PASS' : 'FAIL'}`);
  expect(violationCount, 'violations (listed in the summary above)').toBe(0);
});
