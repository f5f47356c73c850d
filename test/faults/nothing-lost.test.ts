// "Nothing lost" (issue 8): under concurrent load, with the app's database connections cut,
// black-holed or reset at random moments, every write the API acknowledged is in the database,
// an interrupted build leaves nothing partial behind, every refusal is a documented
// problem+json within the configured bounds, and the process recovers by itself.
//
// The fault schedule comes from a seeded PRNG; the seed is printed and can be replayed with
// NOTHING_LOST_SEED=<seed>. Only the schedule replays: request interleavings differ per run.
import { randomInt, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, parseBody, startAppBehindFaultProxy, type AppBehindProxy } from '../support/app.js';
import { ERROR_CATALOGUE, type ErrorCode } from '../../src/domain/errors.js';
import { hashToken } from '../../src/domain/tokens.js';

// Short, but longer than opening a few connections at once on a busy machine: the pool gives
// up on a connection still being opened when this bound passes, so below that it cannot refill
// after a cut while calls keep coming.
const DB_TIMEOUT_MS = 1_000;
/** Room for a loaded machine on top of the configured bounds: never a measure of speed. */
const SLACK_MS = 2_500;
/** A request still unanswered after this long counts as hung (and is aborted). */
const HANG_MS = 15_000;
/** How long faults are injected under load. */
const FAULTS_MS = 5_000;
/**
 * After the last fault the load goes on, the database up, until enough writes were
 * acknowledged to make the checks meaningful (on a loaded machine the pool may take a while to
 * fill again after each fault), at most this long.
 */
const SETTLE_MAX_MS = 8_000;
const ENOUGH = { heartbeats: 40, goodbyes: 3, builds: 5 };
const RECOVERY_BOUND_MS = 10_000;
/** How long set-up calls are retried while a loaded machine makes a healthy database time out. */
const SETUP_RETRY_MS = 10_000;
const HEARTBEAT_AGENTS = 20;
const BUILDERS = 4;

/** Database round trips per route, each bounded by AGENTGATE_DB_TIMEOUT_MS (pool wait included). */
const ROUND_TRIPS: Record<Route, number> = {
  heartbeat: 2, // token lookup, update
  goodbye: 2, // token lookup, update
  // upsert, then the workspace and its agents
  'put-workspace': 3,
  // begin, lock, insert build, insert agents, notify, commit, and a rollback when one fails
  build: 7,
};
/** Codes a request may get while the database is cut; anything else is a defect. */
const EXPECTED_REFUSALS = new Set<ErrorCode>(['DATABASE_UNAVAILABLE', 'OVERLOADED']);

const SEED = process.env.NOTHING_LOST_SEED ? Number(process.env.NOTHING_LOST_SEED) : randomInt(2 ** 31);

/** mulberry32: a small seeded PRNG, so a fault schedule can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

// ---------------------------------------------------------------------------------------------
// What the clients saw, and what the tables hold.

type Route = 'heartbeat' | 'goodbye' | 'put-workspace' | 'build';

type Phase = 'setup' | 'faults' | 'settle' | 'after';

interface Answer {
  route: Route;
  phase: Phase;
  status: number; // 0: no HTTP answer (transport error or hang)
  contentType: string | null;
  retryAfter: string | null;
  // why: bodies are arbitrary JSON, checked field by field below.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  text: string;
  ms: number;
  error?: string;
}

/** Microseconds since the epoch on the database's clock. */
type DbTime = bigint;

interface AgentRecord {
  id: string;
  name: string;
  token: string;
  /** DB now() read just before sending the latest heartbeat that was answered 204. */
  heartbeatAckedAfter?: DbTime;
  goodbyeAckedAfter?: DbTime;
}

interface PutAttempt {
  ownerId: string;
  name: string;
  status: number;
}

interface WorkspaceRecord {
  id: string;
  /** In the order they were sent; one client sends them one after the other. */
  puts: PutAttempt[];
}

interface BuildAnswer {
  id: string;
  buildNumber: number;
  agents: Array<{ id: string; name: string; token: string }>;
}

interface BuildRequest {
  /** Carried in every agent's address, so a build row can be traced to its request. */
  reqId: string;
  workspaceId: string;
  names: string[];
  status: number;
  answer?: BuildAnswer;
}

interface Journal {
  agents: AgentRecord[];
  workspaces: Map<string, WorkspaceRecord>;
  builds: BuildRequest[];
  answers: Answer[];
}

interface Snapshot {
  workspaces: Map<string, { ownerId: string; name: string; deleted: boolean }>;
  builds: Array<{
    id: string;
    workspaceId: string;
    buildNumber: number;
    transition: string;
    agents: Array<{ id: string; name: string; address: string; tokenHash: string }>;
  }>;
  agents: Map<string, { first: DbTime | null; last: DbTime | null; disconnected: DbTime | null }>;
}

const addressFor = (reqId: string) => `http://127.0.0.1:9/${reqId}`;
const reqIdOf = (address: string) => new URL(address).pathname.slice(1);

// ---------------------------------------------------------------------------------------------
// The checks: pure functions from what was seen to a list of violations, so that a planted
// violation can be shown to be caught (first test) and a real one is reported in full.

function boundFor(route: Route): number {
  return ROUND_TRIPS[route] * DB_TIMEOUT_MS + SLACK_MS;
}

/** Violations in one answer: an undocumented refusal, a malformed success, or a bound exceeded. */
export function checkAnswer(a: Answer): string[] {
  const problems: string[] = [];
  const where = `${a.route} answered ${a.status} after ${Math.round(a.ms)} ms`;
  if (a.ms > boundFor(a.route)) problems.push(`${where}: over its bound of ${boundFor(a.route)} ms`);
  if (a.status === 0) {
    problems.push(`${where}: no HTTP answer (${a.error ?? 'unknown'})`);
    return problems;
  }
  const success = { heartbeat: 204, goodbye: 204, 'put-workspace': [200, 201], build: 201 }[a.route];
  if (Array.isArray(success) ? success.includes(a.status) : success === a.status) {
    if (a.status === 204 && a.text !== '') problems.push(`${where}: a 204 with a body`);
    return problems;
  }
  if (!a.contentType?.startsWith('application/problem+json')) {
    problems.push(`${where}: not problem+json (${a.contentType ?? 'no content-type'}): ${a.text.slice(0, 200)}`);
    return problems;
  }
  const code = a.body?.code as string | undefined;
  const entry = code !== undefined && Object.hasOwn(ERROR_CATALOGUE, code) ? ERROR_CATALOGUE[code as ErrorCode] : undefined;
  if (!entry) {
    problems.push(`${where}: undocumented code ${String(code)}`);
    return problems;
  }
  if (entry.status !== a.status) problems.push(`${where}: ${code} documented as ${entry.status}`);
  if (a.body.retryable !== entry.retryable) problems.push(`${where}: ${code} with retryable ${String(a.body.retryable)}`);
  if (a.body.title !== entry.title || typeof a.body.detail !== 'string') problems.push(`${where}: ${code} without its title or detail`);
  if ('hint' in entry && a.body.hint !== entry.hint) problems.push(`${where}: ${code} without its hint`);
  if (!EXPECTED_REFUSALS.has(code as ErrorCode)) problems.push(`${where}: ${code} (${String(a.body.detail)}) is not a database outage`);
  if ((code === 'DATABASE_UNAVAILABLE' || code === 'OVERLOADED') && !/^[1-9]\d*$/.test(a.retryAfter ?? '')) {
    problems.push(`${where}: ${code} without a Retry-After`);
  }
  return problems;
}

/** Violations between what was acknowledged and what the tables hold. */
export function findLosses(journal: Journal, snap: Snapshot): string[] {
  const lost: string[] = [];

  for (const agent of journal.agents) {
    const row = snap.agents.get(agent.id);
    if (!row) {
      lost.push(`agent ${agent.name} (${agent.id}): no row`);
      continue;
    }
    if (agent.heartbeatAckedAfter !== undefined) {
      if (row.first === null) lost.push(`agent ${agent.name}: a heartbeat was acknowledged but first_connected_at is null`);
      if (row.last === null || row.last < agent.heartbeatAckedAfter) {
        lost.push(`agent ${agent.name}: last_connected_at ${String(row.last)} older than the acknowledged heartbeat sent at ${agent.heartbeatAckedAfter}`);
      }
      if (row.first !== null && row.last !== null && row.first > row.last) lost.push(`agent ${agent.name}: first_connected_at after last_connected_at`);
    }
    if (agent.goodbyeAckedAfter !== undefined && (row.disconnected === null || row.disconnected < agent.goodbyeAckedAfter)) {
      lost.push(`agent ${agent.name}: disconnected_at ${String(row.disconnected)} older than the acknowledged goodbye sent at ${agent.goodbyeAckedAfter}`);
    }
  }

  for (const ws of journal.workspaces.values()) {
    const row = snap.workspaces.get(ws.id);
    const firstAcked = ws.puts.findIndex((p) => p.status === 200 || p.status === 201);
    if (firstAcked === -1) continue; // never acknowledged: may or may not exist
    if (!row || row.deleted) {
      lost.push(`workspace ${ws.id}: acknowledged ${ws.puts[firstAcked]!.status} but missing`);
      continue;
    }
    // An acknowledged PUT is the latest state unless a later, unanswered one committed anyway.
    const lastAcked = ws.puts.findLastIndex((p) => p.status === 200 || p.status === 201);
    const possible = ws.puts.slice(lastAcked);
    if (!possible.some((p) => p.name === row.name && p.ownerId === row.ownerId)) {
      lost.push(`workspace ${ws.id}: holds ${row.name}/${row.ownerId}, not what was acknowledged (${ws.puts[lastAcked]!.name})`);
    }
    ws.puts.forEach((p, i) => {
      if (p.status === 201 && i > firstAcked) lost.push(`workspace ${ws.id}: created (201) again after it was acknowledged`);
      if (p.status === 200 && i === 0) lost.push(`workspace ${ws.id}: its first PUT answered 200 (updated) instead of 201`);
    });
  }

  const requests = new Map(journal.builds.map((b) => [b.reqId, b]));
  const buildsByReq = new Map<string, Snapshot['builds'][number]>();
  const numbers = new Map<string, number[]>();
  for (const build of snap.builds) {
    numbers.set(build.workspaceId, [...(numbers.get(build.workspaceId) ?? []), build.buildNumber]);
    if (build.agents.length === 0) {
      lost.push(`build ${build.id} (#${build.buildNumber} of ${build.workspaceId}): no agents (partial)`);
      continue;
    }
    const reqIds = new Set(build.agents.map((a) => reqIdOf(a.address)));
    const reqId = [...reqIds][0]!;
    const request = requests.get(reqId);
    if (reqIds.size !== 1 || !request) {
      lost.push(`build ${build.id}: agents from requests ${[...reqIds].join(', ')}`);
      continue;
    }
    if (buildsByReq.has(reqId)) lost.push(`request ${reqId}: made two builds`);
    buildsByReq.set(reqId, build);
    const names = build.agents.map((a) => a.name).sort();
    if (build.workspaceId !== request.workspaceId || build.transition !== 'start' || names.join() !== [...request.names].sort().join()) {
      lost.push(`build ${build.id} (#${build.buildNumber}): agents [${names.join()}] of [${request.names.join()}] requested (partial)`);
    }
  }
  for (const [workspaceId, list] of numbers) {
    const sorted = list.sort((x, y) => x - y);
    if (sorted.some((n, i) => n !== i + 1)) lost.push(`workspace ${workspaceId}: build numbers ${sorted.join(',')} are not 1..${sorted.length}`);
  }

  for (const request of journal.builds) {
    if (request.status !== 201) continue;
    const answer = request.answer;
    const build = buildsByReq.get(request.reqId);
    if (!answer || !build) {
      lost.push(`request ${request.reqId}: acknowledged 201 but no build holds its agents`);
      continue;
    }
    if (build.id !== answer.id || build.buildNumber !== answer.buildNumber) {
      lost.push(`request ${request.reqId}: answered build ${answer.id} #${answer.buildNumber}, stored ${build.id} #${build.buildNumber}`);
    }
    const stored = new Map(build.agents.map((a) => [a.id, a]));
    if (answer.agents.length !== build.agents.length) lost.push(`build ${answer.id}: answered ${answer.agents.length} agents, stored ${build.agents.length}`);
    for (const agent of answer.agents) {
      const row = stored.get(agent.id);
      if (!row || row.name !== agent.name) lost.push(`build ${answer.id}: answered agent ${agent.name} (${agent.id}) not stored as such`);
      else if (row.tokenHash !== hashToken(agent.token).toString('hex')) lost.push(`build ${answer.id}: agent ${agent.name}'s token does not match its hash`);
    }
  }
  return lost;
}

// ---------------------------------------------------------------------------------------------

describe('the checks catch what they are meant to catch', () => {
  const T = 1_700_000_000_000_000n;
  const ok = (route: Route, status: number): Answer => ({ route, phase: 'faults', status, contentType: null, retryAfter: null, body: undefined, text: '', ms: 5 });
  const problem = (code: string, status: number, retryAfter: string | null, extra: object = {}): Answer => ({
    route: 'heartbeat',
    phase: 'faults',
    status,
    contentType: 'application/problem+json; charset=utf-8',
    retryAfter,
    body: { code, status, ...(Object.hasOwn(ERROR_CATALOGUE, code) ? ERROR_CATALOGUE[code as ErrorCode] : {}), detail: 'x', ...extra },
    text: '{}',
    ms: 5,
  });

  it('flags refusals that are not documented, not problem+json, out of bounds or unanswered', () => {
    expect(checkAnswer(ok('heartbeat', 204))).toEqual([]);
    expect(checkAnswer(problem('DATABASE_UNAVAILABLE', 503, '1'))).toEqual([]);
    expect(checkAnswer(problem('DATABASE_UNAVAILABLE', 503, null))).toHaveLength(1);
    expect(checkAnswer(problem('INTERNAL', 500, null))).toHaveLength(1);
    expect(checkAnswer(problem('UNAUTHENTICATED', 401, null))).toHaveLength(1);
    expect(checkAnswer(problem('DATABASE_UNAVAILABLE', 500, '1'))).toHaveLength(1);
    expect(checkAnswer(problem('DATABASE_UNAVAILABLE', 503, '1', { hint: undefined }))).toHaveLength(1);
    expect(checkAnswer(problem('SOMETHING_ELSE', 503, '1'))).toHaveLength(1);
    expect(checkAnswer({ ...ok('build', 500), contentType: 'text/html', text: '<html>' })).toHaveLength(1);
    expect(checkAnswer({ ...ok('heartbeat', 0), error: 'ECONNRESET' })).toHaveLength(1);
    expect(checkAnswer({ ...ok('heartbeat', 204), ms: boundFor('heartbeat') + 1 })).toHaveLength(1);
  });

  it('flags lost heartbeats and goodbyes, missing workspaces, partial builds and gaps', () => {
    const ws = randomUUID();
    const [b1, b2, b3] = [randomUUID(), randomUUID(), randomUUID()];
    const agentIds = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const token = 'agagt_planted';
    const journal: Journal = {
      agents: [
        { id: agentIds[0]!, name: 'kept', token, heartbeatAckedAfter: T, goodbyeAckedAfter: T },
        { id: agentIds[1]!, name: 'lost-heartbeat', token, heartbeatAckedAfter: T },
        { id: agentIds[2]!, name: 'lost-goodbye', token, goodbyeAckedAfter: T },
        { id: agentIds[3]!, name: 'never-connected', token, heartbeatAckedAfter: T },
      ],
      workspaces: new Map([
        [ws, { id: ws, puts: [{ ownerId: ws, name: 'a', status: 201 }] }],
        ['missing', { id: 'missing', puts: [{ ownerId: ws, name: 'a', status: 503 }, { ownerId: ws, name: 'a', status: 201 }] }],
      ]),
      builds: [
        { reqId: 'r1', workspaceId: ws, names: ['a0'], status: 201, answer: { id: b1, buildNumber: 1, agents: [{ id: agentIds[0]!, name: 'a0', token }] } },
        { reqId: 'r2', workspaceId: ws, names: ['a0', 'a1'], status: 503 },
        { reqId: 'r3', workspaceId: ws, names: ['a0'], status: 201, answer: { id: b3, buildNumber: 3, agents: [{ id: randomUUID(), name: 'a0', token }] } },
      ],
      answers: [],
    };
    const snap: Snapshot = {
      workspaces: new Map([[ws, { ownerId: ws, name: 'a', deleted: false }]]),
      builds: [
        { id: b1, workspaceId: ws, buildNumber: 1, transition: 'start', agents: [{ id: agentIds[0]!, name: 'a0', address: addressFor('r1'), tokenHash: hashToken(token).toString('hex') }] },
        // r2 was interrupted, yet left a build with one of its two agents; r3 was lost, and #2 skipped.
        { id: b2, workspaceId: ws, buildNumber: 3, transition: 'start', agents: [{ id: randomUUID(), name: 'a0', address: addressFor('r2'), tokenHash: '' }] },
      ],
      agents: new Map([
        [agentIds[0]!, { first: T, last: T + 5n, disconnected: T + 1n }],
        [agentIds[1]!, { first: T - 10n, last: T - 1n, disconnected: null }],
        [agentIds[2]!, { first: null, last: null, disconnected: T - 1n }],
        [agentIds[3]!, { first: null, last: T, disconnected: null }],
      ]),
    };
    const found = findLosses(journal, snap);
    expect(found.filter((l) => l.includes('lost-heartbeat'))).toHaveLength(1);
    expect(found.filter((l) => l.includes('lost-goodbye'))).toHaveLength(1);
    expect(found.filter((l) => l.includes('never-connected') && l.includes('first_connected_at is null'))).toHaveLength(1);
    expect(found.some((l) => l.includes('kept'))).toBe(false);
    expect(found.filter((l) => l.startsWith('workspace missing'))).toHaveLength(1);
    expect(found.filter((l) => l.includes('(partial)'))).toHaveLength(1);
    expect(found.filter((l) => l.includes('not 1..2'))).toHaveLength(1);
    expect(found.filter((l) => l.startsWith('request r3'))).toHaveLength(1);
    expect(found).toHaveLength(7);
  });
});

// ---------------------------------------------------------------------------------------------

describe('nothing acknowledged is lost while the database is cut at random moments (issue 8)', () => {
  let env: AppBehindProxy;
  let direct: pg.Pool;
  let phase: Phase = 'setup';

  beforeAll(async () => {
    env = await startAppBehindFaultProxy({ AGENTGATE_DB_TIMEOUT_MS: String(DB_TIMEOUT_MS), LOG_LEVEL: 'warn' });
    // Read and checked directly, never through the proxy.
    direct = new pg.Pool({ connectionString: env.database.url, max: 4 });
  });
  afterAll(async () => {
    await direct?.end();
    await env?.close();
  });

  async function dbNow(): Promise<DbTime> {
    const { rows } = await direct.query<{ us: string }>(`select (extract(epoch from now()) * 1000000)::bigint::text as us`);
    return BigInt(rows[0]!.us);
  }

  async function send(journal: Journal, route: Route, method: string, path: string, token: string, body?: unknown): Promise<Answer> {
    const started = performance.now();
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let answer: Answer;
    try {
      const res = await fetch(env.t.url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(HANG_MS),
      });
      const text = await res.text();
      const parsed = parseBody(text);
      answer = {
        route,
        phase,
        status: res.status,
        contentType: res.headers.get('content-type'),
        retryAfter: res.headers.get('retry-after'),
        body: parsed,
        text,
        ms: performance.now() - started,
      };
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code;
      const ms = performance.now() - started;
      const message = `${(error as Error).message}${cause ? ` (${cause})` : ''}`;
      answer = { route, phase, status: 0, contentType: null, retryAfter: null, body: undefined, text: '', ms, error: message };
    }
    journal.answers.push(answer);
    return answer;
  }

  async function putWorkspace(journal: Journal, ws: WorkspaceRecord, name: string): Promise<number> {
    const attempt: PutAttempt = { ownerId: ws.id, name, status: 0 };
    ws.puts.push(attempt);
    const a = await send(journal, 'put-workspace', 'PUT', `/workspaces/${ws.id}`, ENV_ADMIN_TOKEN, { ownerId: ws.id, name });
    attempt.status = a.status;
    return a.status;
  }

  async function requestBuild(journal: Journal, workspaceId: string, names: string[]): Promise<BuildRequest> {
    const request: BuildRequest = { reqId: randomUUID(), workspaceId, names, status: 0 };
    journal.builds.push(request);
    const a = await send(journal, 'build', 'POST', `/workspaces/${workspaceId}/builds`, ENV_ADMIN_TOKEN, {
      transition: 'start',
      agents: names.map((name) => ({ name, address: addressFor(request.reqId) })),
    });
    request.status = a.status;
    if (a.status === 201) request.answer = { id: a.body.build.id, buildNumber: a.body.build.buildNumber, agents: a.body.agents };
    return request;
  }

  /**
   * Repeats a call made while the database is up until it is no longer refused as unavailable:
   * with a short bound, a loaded machine can make a healthy database time out now and then,
   * which is a documented answer, not a failure.
   */
  async function whileUnavailable<T>(call: () => Promise<T>, status: (r: T) => number): Promise<T> {
    const deadline = performance.now() + SETUP_RETRY_MS;
    for (;;) {
      const result = await call();
      if (status(result) !== 503 || performance.now() > deadline) return result;
      await sleep(50);
    }
  }

  /** A few agents per workspace, registered while the database is up. */
  async function registerHeartbeatAgents(journal: Journal): Promise<void> {
    for (let w = 0; w < 4; w++) {
      const ws: WorkspaceRecord = { id: randomUUID(), puts: [] };
      journal.workspaces.set(ws.id, ws);
      expect(await whileUnavailable(() => putWorkspace(journal, ws, `heartbeats-${w}`), (s) => s)).toBeOneOf([200, 201]);
      const names = Array.from({ length: HEARTBEAT_AGENTS / 4 }, (_, i) => `hb${i}`);
      const build = await whileUnavailable(() => requestBuild(journal, ws.id, names), (b) => b.status);
      expect(build.status).toBe(201);
      for (const a of build.answer!.agents) journal.agents.push({ id: a.id, name: `${w}/${a.name}`, token: a.token });
    }
  }

  /** Heartbeats, with a goodbye now and then; remembers the DB time before each acknowledged one. */
  async function agentLoop(journal: Journal, agent: AgentRecord, rng: () => number, running: () => boolean): Promise<void> {
    while (running()) {
      const goodbye = rng() < 0.2;
      const sentAfter = await dbNow();
      const a = goodbye
        ? await send(journal, 'goodbye', 'POST', '/agent/disconnect', agent.token)
        : await send(journal, 'heartbeat', 'POST', '/agent/heartbeat', agent.token);
      if (a.status === 204) {
        if (goodbye) agent.goodbyeAckedAfter = sentAfter;
        else agent.heartbeatAckedAfter = sentAfter;
      }
      await sleep(20 + rng() * 80);
    }
  }

  /** Creates and renames workspaces and builds on them, several builders on the same ones. */
  async function builderLoop(
    journal: Journal,
    built: string[],
    mine: WorkspaceRecord[],
    me: number,
    rng: () => number,
    running: () => boolean,
  ): Promise<void> {
    while (running()) {
      const roll = rng();
      if (roll < 0.08) {
        // A new workspace, retried until acknowledged: a retry may find the first attempt committed.
        const ws: WorkspaceRecord = { id: randomUUID(), puts: [] };
        journal.workspaces.set(ws.id, ws);
        mine.push(ws);
        for (let tries = 0; tries < 20 && running(); tries++) {
          const status = await putWorkspace(journal, ws, `builder-${me}`);
          if (status === 200 || status === 201) {
            built.push(ws.id);
            break;
          }
          await sleep(20 + rng() * 50);
        }
      } else if (roll < 0.16) {
        const ws = mine[Math.floor(rng() * mine.length)]!;
        if (ws.puts.some((p) => p.status === 200 || p.status === 201)) await putWorkspace(journal, ws, `renamed-${randomInt(1_000_000)}`);
      } else {
        const workspaceId = built[Math.floor(rng() * built.length)]!;
        const names = Array.from({ length: 1 + Math.floor(rng() * 4) }, (_, i) => `b${i}`);
        await requestBuild(journal, workspaceId, names);
      }
      await sleep(20 + rng() * 60);
    }
  }

  /** Workspaces for a builder, created while the database is up. */
  async function builderWorkspaces(journal: Journal, built: string[], me: number): Promise<WorkspaceRecord[]> {
    const mine: WorkspaceRecord[] = [];
    for (let i = 0; i < 2; i++) {
      const ws: WorkspaceRecord = { id: randomUUID(), puts: [] };
      journal.workspaces.set(ws.id, ws);
      expect(await whileUnavailable(() => putWorkspace(journal, ws, `builder-${me}`), (s) => s)).toBeOneOf([200, 201]);
      built.push(ws.id);
      mine.push(ws);
    }
    return mine;
  }

  /**
   * Alternates faults with healthy periods of random length: cut (connections reset, new ones
   * refused), blackhole (nothing forwarded), a burst of resets of the connections open at that
   * moment (a failover), or latency around the query bound (answers that come too late, commits
   * included).
   */
  async function faultLoop(rng: () => number, until: number, log: string[]): Promise<void> {
    const { proxy } = env;
    const t0 = Date.now();
    while (Date.now() < until) {
      const roll = rng();
      const hold = 50 + rng() * 350;
      if (roll < 0.3) {
        log.push(`${Date.now() - t0}ms cut ${Math.round(hold)}`);
        proxy.setMode('cut');
        await sleep(hold);
      } else if (roll < 0.6) {
        log.push(`${Date.now() - t0}ms blackhole ${Math.round(hold)}`);
        proxy.setMode('blackhole');
        await sleep(hold);
      } else if (roll < 0.8) {
        const latencyMs = Math.round(DB_TIMEOUT_MS / 2 + rng() * DB_TIMEOUT_MS);
        log.push(`${Date.now() - t0}ms latency ${latencyMs}ms for ${Math.round(hold)}`);
        proxy.setMode('latency', { latencyMs });
        await sleep(hold);
      } else {
        // Connections open now are reset mid-query; new ones are served.
        const resets = 1 + Math.floor(rng() * 3);
        log.push(`${Date.now() - t0}ms reset x${resets} over ${Math.round(hold)}`);
        for (let i = 0; i < resets; i++) {
          await sleep(hold / resets);
          proxy.resetInFlight();
        }
      }
      proxy.setMode('pass');
      await sleep(200 + rng() * 400);
    }
    proxy.setMode('pass');
  }

  async function snapshot(): Promise<Snapshot> {
    const workspaces = await direct.query<{ id: string; owner_id: string; name: string; deleted: boolean }>(
      `select id, owner_id, name, deleted_at is not null as deleted from workspaces`,
    );
    const builds = await direct.query<Snapshot['builds'][number] & { agents: Snapshot['builds'][number]['agents'] }>(
      `select b.id, b.workspace_id as "workspaceId", b.build_number as "buildNumber", b.transition,
              coalesce(json_agg(json_build_object('id', a.id, 'name', a.name, 'address', a.address,
                                                  'tokenHash', encode(a.token_hash, 'hex')))
                         filter (where a.id is not null), '[]') as agents
         from workspace_builds b left join workspace_agents a on a.build_id = b.id
        group by b.id`,
    );
    const agents = await direct.query<{ id: string; first: string | null; last: string | null; disconnected: string | null }>(
      `select id,
              (extract(epoch from first_connected_at) * 1000000)::bigint::text as first,
              (extract(epoch from last_connected_at) * 1000000)::bigint::text as last,
              (extract(epoch from disconnected_at) * 1000000)::bigint::text as disconnected
         from workspace_agents`,
    );
    const time = (v: string | null) => (v === null ? null : BigInt(v));
    return {
      workspaces: new Map(workspaces.rows.map((w) => [w.id, { ownerId: w.owner_id, name: w.name, deleted: w.deleted }])),
      builds: builds.rows,
      agents: new Map(agents.rows.map((a) => [a.id, { first: time(a.first), last: time(a.last), disconnected: time(a.disconnected) }])),
    };
  }

  it(
    'heartbeats, goodbyes, workspaces and builds acknowledged are stored; interrupted builds leave nothing partial; refusals are documented and bounded; calls recover',
    async () => {
      console.info(`nothing-lost seed: ${SEED} (replay with NOTHING_LOST_SEED=${SEED})`);
      const journal: Journal = { agents: [], workspaces: new Map(), builds: [], answers: [] };
      await registerHeartbeatAgents(journal);
      const built: string[] = [];
      const mine = await Promise.all(Array.from({ length: BUILDERS }, (_, me) => builderWorkspaces(journal, built, me)));

      const master = prng(SEED);
      const seeds = () => prng(Math.floor(master() * 2 ** 31));
      const faultRng = seeds();
      const faultLog: string[] = [];
      let running = true;
      const load = Promise.all([
        ...journal.agents.map((agent) => agentLoop(journal, agent, seeds(), () => running)),
        ...mine.map((own, me) => builderLoop(journal, built, own, me, seeds(), () => running)),
      ]);
      phase = 'faults';
      await faultLoop(faultRng, Date.now() + FAULTS_MS, faultLog);
      env.proxy.setMode('pass');
      phase = 'settle';
      const acked = (route: Route, status: number, during?: Phase) =>
        journal.answers.filter((a) => a.route === route && a.status === status && (during === undefined || a.phase === during)).length;
      const enough = () =>
        acked('heartbeat', 204) >= ENOUGH.heartbeats && acked('goodbye', 204) >= ENOUGH.goodbyes && acked('build', 201) >= ENOUGH.builds;
      const settleDeadline = performance.now() + SETTLE_MAX_MS;
      while (!enough() && performance.now() < settleDeadline) await sleep(50);
      running = false;
      await load;
      phase = 'after';
      const context = `seed ${SEED}; faults: ${faultLog.join('; ')}`;

      // Read the tables directly, once every request of the run has been answered.
      const snap = await snapshot();
      expect(findLosses(journal, snap), context).toEqual([]);
      expect(journal.answers.flatMap(checkAnswer), context).toEqual([]);

      // The run must have exercised both sides: writes acknowledged, and writes refused while
      // the faults were on.
      const refused = (route: Route) =>
        journal.answers.filter((a) => a.route === route && a.phase === 'faults' && a.body?.code === 'DATABASE_UNAVAILABLE').length;
      const summary = {
        heartbeats: { acked: acked('heartbeat', 204), ackedDuringFaults: acked('heartbeat', 204, 'faults'), refused: refused('heartbeat') },
        goodbyes: { acked: acked('goodbye', 204), ackedDuringFaults: acked('goodbye', 204, 'faults'), refused: refused('goodbye') },
        workspaces: { acked: acked('put-workspace', 201) + acked('put-workspace', 200), refused: refused('put-workspace') },
        builds: { acked: acked('build', 201), ackedDuringFaults: acked('build', 201, 'faults'), refused: refused('build') },
        slowestMs: Math.round(Math.max(...journal.answers.map((a) => a.ms))),
      };
      console.info(`nothing-lost ${context}\nnothing-lost summary: ${JSON.stringify(summary)}`);
      expect(summary.heartbeats.acked, context).toBeGreaterThanOrEqual(ENOUGH.heartbeats);
      expect(summary.goodbyes.acked, context).toBeGreaterThanOrEqual(ENOUGH.goodbyes);
      expect(summary.builds.acked, context).toBeGreaterThanOrEqual(ENOUGH.builds);
      expect(summary.heartbeats.refused, context).toBeGreaterThan(0);
      expect(summary.builds.refused, context).toBeGreaterThan(0);

      // Recovery: with the database back, every kind of call succeeds again within a bound.
      const recoveryStarted = performance.now();
      const probe = journal.agents[0]!;
      const recovered = async (): Promise<boolean> => {
        const ws: WorkspaceRecord = { id: randomUUID(), puts: [] };
        journal.workspaces.set(ws.id, ws);
        const put = await putWorkspace(journal, ws, 'recovery');
        const heartbeat = await send(journal, 'heartbeat', 'POST', '/agent/heartbeat', probe.token);
        const build = put === 201 ? await requestBuild(journal, ws.id, ['r0']) : undefined;
        const ready = await fetch(`${env.t.url}/readyz`);
        return heartbeat.status === 204 && build?.status === 201 && ready.status === 200;
      };
      while (!(await recovered())) {
        expect(performance.now() - recoveryStarted, `${context}: no recovery`).toBeLessThan(RECOVERY_BOUND_MS);
        await sleep(50);
      }
      expect((await fetch(`${env.t.url}/healthz`)).status).toBe(200);

      // Every acknowledged build's agents authenticate with the tokens they were given, and
      // their heartbeats, made with the database up, are stored like the others.
      const given: AgentRecord[] = journal.builds.flatMap((b) => (b.answer?.agents ?? []).map((a) => ({ ...a, name: `${b.reqId}/${a.name}` })));
      const refusedTokens: string[] = [];
      for (let i = 0; i < given.length; i += 8) {
        await Promise.all(
          given.slice(i, i + 8).map(async (agent) => {
            let sentAfter = 0n;
            const a = await whileUnavailable(
              async () => {
                sentAfter = await dbNow();
                return send(journal, 'heartbeat', 'POST', '/agent/heartbeat', agent.token);
              },
              (r) => r.status,
            );
            if (a.status === 204) agent.heartbeatAckedAfter = sentAfter;
            else refusedTokens.push(`${agent.name}: ${a.status} ${String(a.body?.code)}`);
          }),
        );
      }
      expect(refusedTokens, context).toEqual([]);
      journal.agents.push(...given.filter((g) => !journal.agents.some((a) => a.id === g.id)));
      expect(findLosses(journal, await snapshot()), context).toEqual([]);
    },
    60_000,
  );
});
