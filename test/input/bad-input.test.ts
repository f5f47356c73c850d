// The "bad input" suite: property-based requests over every route, sent as raw HTTP/1.1 over a
// real socket (fetch would normalise the URL and refuse odd bytes), with arbitrary methods,
// paths, headers, query strings and bodies. Every answer must be either a genuine success of a
// valid request, a response the agent itself gave through the proxy, or problem+json with a
// documented code and its status (contract §6); never a 500, a stack trace, a hang, or a row
// changed by a refused request.
//
// Reproduce a failure with FC_SEED=<seed printed by the run> (and FC_PATH=<path> to replay
// only the shrunk case).
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { closedPortAddress, startAgent, type FakeAgent } from '../support/agents.js';
import { AgentRows, createWorkspace, type Workspace } from '../support/gate-fixtures.js';
import { DOCUMENTED_CODES } from '../soak/criteria.js';

// ---------------------------------------------------------------------------------------------
// contract §6: the only codes and statuses an error answer may carry
// ---------------------------------------------------------------------------------------------

// One contract §6 table for the suites (test/soak/criteria.ts), written from the contract, not from src/errors.ts.
const SPEC_CODES = DOCUMENTED_CODES;

// What must never reach a body: stack frames, source locations, SQL and driver messages.
const LEAK = /\n\s+at |\bat [\w.<>]+ \(|\.[cm]?[jt]s:\d+|node_modules|syntax error at or near|invalid input syntax|relation "|duplicate key|violates|pg_|ECONNREFUSED|Error: /;

const BODY_LIMIT = 16_384;
const TIMEOUT_MS = 3_000;
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() % 2 ** 31;
const PATH = process.env.FC_PATH;

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 exchange
// ---------------------------------------------------------------------------------------------

interface Answer {
  kind: 'answer';
  status: number;
  headers: Map<string, string[]>;
  body: Buffer;
}
type Outcome = Answer | { kind: 'closed'; bytes: number; interimOnly: boolean } | { kind: 'hang'; bytes: number };

// One or more complete 1xx responses and nothing else.
const INTERIM_ONLY = /^(?:HTTP\/1\.1 1\d\d [^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n)+$/;

/** A query value as the gate reads it: percent-decoded, `+` as a space; as sent when malformed. */
function decodedOr(value: string): string {
  try {
    return decodeURIComponent(value.replaceAll('+', ' '));
  } catch {
    return value;
  }
}

function header(answer: Answer, name: string): string | undefined {
  return answer.headers.get(name)?.[0];
}

/** Parses the first final response in `data`; undefined while it is incomplete. */
function parseResponse(data: Buffer, headRequest: boolean, closed: boolean): Answer | undefined {
  let offset = 0;
  for (;;) {
    const end = data.indexOf('\r\n\r\n', offset);
    if (end === -1) return undefined;
    const lines = data.subarray(offset, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? Number.NaN);
    if (!Number.isInteger(status)) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`);
    const headers = new Map<string, string[]>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
    }
    const bodyStart = end + 4;
    if (status >= 100 && status < 200) {
      offset = bodyStart;
      continue;
    }
    const answer = (body: Buffer): Answer => ({ kind: 'answer', status, headers, body });
    if (headRequest || status === 204 || status === 304) return answer(Buffer.alloc(0));
    const length = headers.get('content-length')?.[0];
    if (length !== undefined) {
      const n = Number(length);
      return data.length - bodyStart >= n ? answer(data.subarray(bodyStart, bodyStart + n)) : undefined;
    }
    if (/chunked/i.test(headers.get('transfer-encoding')?.[0] ?? '')) {
      const chunks: Buffer[] = [];
      let at = bodyStart;
      for (;;) {
        const lineEnd = data.indexOf('\r\n', at);
        if (lineEnd === -1) return undefined;
        const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
        if (size === 0) return answer(Buffer.concat(chunks));
        if (data.length < lineEnd + 2 + size + 2) return undefined;
        chunks.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
    }
    return closed ? answer(data.subarray(bodyStart)) : undefined;
  }
}

/** Writes `bytes`, optionally half-closes, and waits for one response, a close, or the timeout. */
function exchange(port: number, bytes: Buffer, opts: { halfClose: boolean; head: boolean }): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const socket = net.connect(port, '127.0.0.1');
    const finish = (outcome: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'hang', bytes: Buffer.concat(chunks).length }), TIMEOUT_MS);
    const attempt = (closed: boolean) => {
      const data = Buffer.concat(chunks);
      if (data.length === 0) {
        if (closed) finish({ kind: 'closed', bytes: 0, interimOnly: false });
        return;
      }
      const parsed = parseResponse(data, opts.head, closed);
      if (parsed) finish(parsed);
      else if (closed) finish({ kind: 'closed', bytes: data.length, interimOnly: INTERIM_ONLY.test(data.toString('latin1')) });
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      attempt(false);
    });
    // The server may answer and close before reading all we send: a reset after an answer is fine.
    socket.on('error', () => attempt(true));
    socket.on('close', () => attempt(true));
    socket.on('connect', () => {
      socket.write(bytes);
      if (opts.halfClose) socket.end();
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The world: workspaces, tokens and an agent behind the proxy
// ---------------------------------------------------------------------------------------------

let t: TestApp;
let port: number;
let rows: AgentRows & { close(): Promise<void> };
let db: pg.Client;
let agent: FakeAgent;
let deadAddress: string;

/** The proxied workspace: its agent is the fake agent; no generated request may change it. */
let proxied: Workspace;
/** Workspaces generated requests may change or delete. */
const scratch: Workspace[] = [];
let noAgent: string;
let deleted: string;
let connToken: string;
let scopedToken: string;
let revokedToken: string;
let agentToken: string;
/** Token ids generated requests may revoke. */
const scratchTokenIds: string[] = [];

beforeAll(async () => {
  t = await startTestApp({
    env: {
      AGENTGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT),
      AGENTGATE_DIAL_TIMEOUT_MS: '1000',
      AGENTGATE_PROXY_HEADERS_TIMEOUT_MS: '1500',
      // The proxied agent must stay connected for the whole run without heartbeats.
      AGENTGATE_INACTIVE_TIMEOUT_MS: '3600000',
      // A busy shared machine must not turn setup calls into DATABASE_UNAVAILABLE.
      AGENTGATE_DB_TIMEOUT_MS: '5000',
    },
    // Shedding load is not what this suite is about, and a shared machine lags at times.
    maxEventLoopDelayMs: 60_000,
  });
  port = Number(new URL(t.url).port);
  rows = await AgentRows.open(t.database.url);
  db = new pg.Client({ connectionString: t.database.url });
  await db.connect();
  deadAddress = await closedPortAddress();

  // Setup is not under test: wait until the app answers a write (a loaded machine may be slow to
  // open the first pool connections).
  for (let i = 0; ; i += 1) {
    const r = await t.call('PUT', `/workspaces/${randomUUID()}`, { token: ENV_ADMIN_TOKEN, body: { ownerId: randomUUID(), name: 'warm-up' } });
    if (r.status === 201) break;
    process.stderr.write(`bad-input: warm-up answered ${r.status} ${r.text}\n`);
    if (i === 10) throw new Error(`the app does not accept writes: ${r.status} ${r.text}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  agent = await startAgent();
  agent.handle = (req, res) => {
    // Reads the body (as a tool would), then answers; /status/<n> answers n, to check that
    // the agent's own errors pass through as they are.
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const wanted = /\/status\/(\d{3})/.exec(req.url ?? '')?.[1];
      const status = wanted ? Number(wanted) : 200;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(`agent ${status} ${Buffer.concat(chunks).length}`);
    });
    return true;
  };
  proxied = await createWorkspace(t, [{ name: 'main', address: `${agent.address}/base` }, { name: 'second', address: `${agent.address}/two`, displayOrder: 1 }]);
  await rows.heartbeat(proxied.agents[0]!.id);
  await rows.heartbeat(proxied.agents[1]!.id);

  for (let i = 0; i < 3; i += 1) scratch.push(await createWorkspace(t, [{ name: 'main', address: deadAddress }]));
  agentToken = scratch[0]!.agents[0]!.token;
  noAgent = (await createWorkspace(t, [])).id;
  deleted = (await createWorkspace(t, [])).id;
  expect((await t.call('DELETE', `/workspaces/${deleted}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);

  const token = async (body: object) => {
    const r = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body });
    expect(r.status).toBe(201);
    return r.body as { id: string; token: string };
  };
  const conn = await token({ name: 'conn', scope: 'conn' });
  connToken = conn.token;
  scopedToken = (await token({ name: 'scoped', scope: 'conn', ownerId: proxied.ownerId })).token;
  const revoked = await token({ name: 'revoked', scope: 'conn' });
  revokedToken = revoked.token;
  expect((await t.call('DELETE', `/tokens/${revoked.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
  for (let i = 0; i < 4; i += 1) scratchTokenIds.push((await token({ name: `scratch${i}`, scope: 'admin' })).id);
  process.stderr.write(`bad-input: fast-check seed ${SEED}\n`);
}, 60_000);

afterAll(async () => {
  await db?.end();
  await rows?.close();
  await agent?.close();
  await t?.close();
});

/** Every row of the tables a request can change, as one string. */
async function snapshot(): Promise<string> {
  const all = (table: string) => `(select coalesce(json_agg(t order by t.id), '[]'::json) from ${table} t)`;
  const { rows: result } = await db.query<{ s: string }>(
    `select json_build_object('workspaces', ${all('workspaces')}, 'builds', ${all('workspace_builds')},
       'agents', ${all('workspace_agents')}, 'tokens', ${all('api_tokens')})::text as s`,
  );
  return result[0]!.s;
}

// ---------------------------------------------------------------------------------------------
// Requests and what is known about them
// ---------------------------------------------------------------------------------------------

/** Whether a request may succeed: 'invalid' ones must not, 'unsure' ones are not judged. */
type Validity = 'valid' | 'invalid' | 'unsure';

function worst(...all: Validity[]): Validity {
  if (all.includes('invalid')) return 'invalid';
  return all.includes('unsure') ? 'unsure' : 'valid';
}

interface Req {
  route: string;
  method: string;
  target: Buffer;
  headers: Array<[string, Buffer]>;
  body: Buffer | undefined;
  /** length: Content-Length; chunked; truncated: fewer bytes than declared, then EOF. */
  framing: 'length' | 'chunked' | 'truncated';
  validity: Validity;
  /** Why it is invalid or unsure, for failure messages. */
  notes: string[];
  /** A success of this route may change rows. */
  writes: boolean;
  /** The whole request as bytes, when generated as such (garbage). */
  raw?: Buffer;
}

const latin1 = (s: string) => Buffer.from(s, 'latin1');

function serialize(req: Req): Buffer {
  if (req.raw) return req.raw;
  const head: Buffer[] = [latin1(`${req.method} `), req.target, latin1(` HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`)];
  for (const [name, value] of req.headers) head.push(latin1(`${name}: `), value, latin1('\r\n'));
  const body = req.body;
  if (body !== undefined) {
    if (req.framing === 'chunked') head.push(latin1('Transfer-Encoding: chunked\r\n'));
    else head.push(latin1(`Content-Length: ${body.length + (req.framing === 'truncated' ? 7 : 0)}\r\n`));
  }
  head.push(latin1('Connection: close\r\n\r\n'));
  if (body !== undefined) {
    if (req.framing === 'chunked') {
      const half = body.length >> 1;
      for (const part of [body.subarray(0, half), body.subarray(half)]) {
        if (part.length > 0) head.push(latin1(`${part.length.toString(16)}\r\n`), part, latin1('\r\n'));
      }
      head.push(latin1('0\r\n\r\n'));
    } else head.push(body);
  }
  return Buffer.concat(head);
}

/**
 * The client half-closes when it has sent all it will: after a body cut short, raw bytes, or a
 * framing header of its own (the server cannot know the body will never come otherwise).
 */
function halfCloses(req: Req): boolean {
  return req.raw !== undefined || req.framing === 'truncated' || req.headers.some(([n]) => /^(content-length|transfer-encoding)$/i.test(n));
}

function describeReq(req: Req): string {
  const bytes = serialize(req);
  const shown = bytes.length > 600 ? `${bytes.subarray(0, 600).toString('latin1')}... (${bytes.length} bytes)` : bytes.toString('latin1');
  return `${req.route} [${req.validity}${req.notes.length ? `: ${req.notes.join('; ')}` : ''}]\n${JSON.stringify(shown)}`;
}

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Independent of the gate's own check: is `url` (as the agent got it) inside the base path? */
function safeAgentPath(url: string): boolean {
  const path = url.split('?')[0] ?? '';
  if (path.includes('\\')) return false;
  return path.split('/').every((segment) => {
    let current = segment;
    for (let i = 0; i < 8; i += 1) {
      let next: string;
      try {
        next = decodeURIComponent(current);
      } catch {
        return true;
      }
      if (next === current) break;
      current = next;
    }
    const bare = current.split(';')[0];
    return bare !== '.' && bare !== '..' && !current.includes('/') && !current.includes('\\');
  });
}

/** Waits (bounded) until the rows stay as they are across two reads 50 ms apart. */
async function settled(last: string): Promise<void> {
  const until = performance.now() + 2_000;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 50)); // a pause between two reads is the check
    const now = await snapshot();
    if (now === last || performance.now() > until) return;
    last = now;
  }
}

/** What the answers were, per property: printed so that a run shows what it exercised. */
let tallies = new Map<string, number>();
function tally(key: string): void {
  tallies.set(key, (tallies.get(key) ?? 0) + 1);
}

async function check(req: Req): Promise<Outcome> {
  const before = await snapshot();
  const agentSeen = agent.requests.length;
  const outcome = await exchange(port, serialize(req), { halfClose: halfCloses(req), head: req.method === 'HEAD' });
  const after = await snapshot();
  const why = () => describeReq(req);

  if (outcome.kind !== 'answer') tally(outcome.kind);
  if (outcome.kind === 'hang') throw new Error(`no answer within ${TIMEOUT_MS} ms (${outcome.bytes} bytes received) to ${why()}`);
  if (outcome.kind === 'closed') {
    // Only a request the client cut short or framed wrongly itself may be dropped without an
    // answer. After `100 Continue`, Node's parser may find the framing broken; as Node itself,
    // the app then closes rather than write a second response on the socket.
    if (!halfCloses(req) || (outcome.bytes > 0 && !outcome.interimOnly)) throw new Error(`connection closed after ${outcome.bytes} bytes, without a complete answer, for ${why()}`);
    if (after !== before) throw new Error(`rows changed by a request cut short: ${why()}`);
    // The server may still be working on what it read of it; the next request's before-and-
    // after must not see that work land.
    await settled(after);
    return outcome;
  }
  const { status } = outcome;
  const text = outcome.body.toString('utf8');
  tally(`${status} ${/"code":"([A-Z_]+)"/.exec(text)?.[1] ?? (header(outcome, 'x-agentgate-upstream') ? 'agent' : '')}`);
  const relayed = header(outcome, 'x-agentgate-upstream') === 'agent';
  const reached = agent.requests.slice(agentSeen).filter((r) => !r.url.endsWith('/health'));
  for (const r of reached) {
    if (!safeAgentPath(r.url)) throw new Error(`the agent got ${JSON.stringify(r.url)}, outside its base path, for ${why()}`);
  }

  if (relayed) {
    if (req.validity === 'invalid') throw new Error(`an invalid request reached the agent (status ${status}): ${why()}`);
    if (after !== before) throw new Error(`rows changed by a proxied request: ${why()}`);
    return outcome;
  }
  if (status >= 200 && status < 300) {
    if (req.validity === 'invalid') throw new Error(`an invalid request succeeded with ${status} ${text.slice(0, 300)}: ${why()}`);
    if (!req.writes && after !== before) throw new Error(`rows changed by a read (${status}): ${why()}`);
    return outcome;
  }
  const contentType = header(outcome, 'content-type') ?? '';
  if (!/^application\/problem\+json(;|$)/.test(contentType)) {
    throw new Error(`answer ${status} with content-type ${JSON.stringify(contentType)}, not problem+json: ${JSON.stringify(text.slice(0, 300))} for ${why()}`);
  }
  if (req.method !== 'HEAD') {
    let problem: { code?: unknown; status?: unknown; title?: unknown; detail?: unknown; retryable?: unknown };
    try {
      problem = JSON.parse(text) as typeof problem;
    } catch {
      throw new Error(`problem+json body is not JSON: ${JSON.stringify(text.slice(0, 300))} for ${why()}`);
    }
    const code = String(problem.code);
    if (!(code in SPEC_CODES)) throw new Error(`undocumented code ${code} (${status}) for ${why()}`);
    if (SPEC_CODES[code] !== status || problem.status !== status) throw new Error(`code ${code} answered with status ${status} (body status ${String(problem.status)}) for ${why()}`);
    if (typeof problem.title !== 'string' || typeof problem.detail !== 'string' || typeof problem.retryable !== 'boolean') {
      throw new Error(`incomplete problem ${text.slice(0, 300)} for ${why()}`);
    }
    if (LEAK.test(text)) throw new Error(`the body leaks internals: ${text.slice(0, 500)} for ${why()}`);
  }
  if (status === 500) throw new Error(`500 INTERNAL (a bug) for ${why()}`);
  if (after !== before) throw new Error(`rows changed by a refused request (${status}): ${why()}`);
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

type Scope = 'admin' | 'chat' | 'agent' | 'public';

interface Part {
  validity: Validity;
  note?: string;
}

const part = (validity: Validity, note?: string): Part => ({ validity, note });

// Tokens: mostly the right kind so that validation, not only authentication, is exercised.
function authorization(scope: Scope): fc.Arbitrary<{ headers: Array<[string, Buffer]> } & Part> {
  const as = (value: string | Buffer, validity: Validity, note: string) => ({
    headers: [['Authorization', typeof value === 'string' ? latin1(value) : value] as [string, Buffer]],
    ...part(validity, note),
  });
  const good: Array<{ token: () => string; ok: boolean; name: string }> = [
    { token: () => ENV_ADMIN_TOKEN, ok: scope === 'admin' || scope === 'chat', name: 'admin token' },
    { token: () => connToken, ok: scope === 'chat', name: 'conn token' },
    { token: () => scopedToken, ok: scope === 'chat', name: 'owner-scoped conn token' },
    { token: () => agentToken, ok: scope === 'agent', name: 'agent token' },
  ];
  const right = good.filter((g) => g.ok || scope === 'public');
  const rightToken = fc.constantFrom(...(right.length > 0 ? right : good));
  const anyToken = fc.constantFrom(...good);
  const pub = scope === 'public';
  return fc.oneof(
    { weight: 12, arbitrary: rightToken.map((g) => as(`Bearer ${g.token()}`, g.ok || pub ? 'valid' : 'invalid', g.name)) },
    { weight: 2, arbitrary: anyToken.map((g) => as(`Bearer ${g.token()}`, g.ok || pub ? 'valid' : 'invalid', g.name)) },
    { weight: 1, arbitrary: rightToken.map((g) => as(`bearer \t${g.token()}  `, g.ok || pub ? 'unsure' : 'invalid', `odd spacing ${g.name}`)) },
    {
      weight: 3,
      arbitrary: fc
        .oneof(
          fc.constant(''),
          fc.constant('Bearer'),
          fc.constant('Bearer '),
          fc.constant(`Basic ${Buffer.from('admin:admin').toString('base64')}`),
          fc.constant(`Token ${ENV_ADMIN_TOKEN}`),
          fc.constant(`Bearer ${ENV_ADMIN_TOKEN} ${ENV_ADMIN_TOKEN}`),
          fc.constant(`Bearer ${ENV_ADMIN_TOKEN}x`),
          fc.constant(`Bearer ${revokedToken}`),
          fc.constant(`Bearer ${'a'.repeat(600)}`),
          fc.constant(`Bearer ${'b'.repeat(9000)}`),
          fc.constant('Bearer \u00e9\u00ff'),
          fc.string({ maxLength: 40 }).map((s) => `Bearer ${s}`),
        )
        .map((v) => as(v, pub ? 'valid' : 'invalid', 'bad authorization')),
    },
    { weight: 1, arbitrary: fc.constant({ headers: [] as Array<[string, Buffer]>, ...part(pub ? 'valid' : 'invalid', 'no authorization') }) },
    {
      weight: 1,
      arbitrary: rightToken.map((g) => ({
        headers: [
          ['Authorization', latin1(`Bearer ${g.token()}`)],
          ['Authorization', latin1('Bearer nope')],
        ] as Array<[string, Buffer]>,
        ...part(pub ? 'valid' : 'unsure', 'duplicated authorization'),
      })),
    },
  );
}

// Workspace ids as they appear in a path: known ones, and malformed ones.
function workspaceId(pool: () => string[]): fc.Arbitrary<{ id: string } & Part> {
  const known = fc.integer({ min: 0, max: 50 }).map((i) => {
    const ids = pool();
    return ids[i % ids.length]!;
  });
  return fc.oneof(
    { weight: 10, arbitrary: known.map((id) => ({ id, ...part('valid') })) },
    { weight: 2, arbitrary: fc.uuid().map((id) => ({ id, ...part('valid', 'unknown id') })) },
    { weight: 1, arbitrary: known.map((id) => ({ id: id.toUpperCase(), ...part('unsure', 'upper-case id') })) },
    {
      weight: 1,
      arbitrary: known.map((id) => ({ id: [...id].map((c) => `%${c.charCodeAt(0).toString(16)}`).join(''), ...part('unsure', 'percent-encoded id') })),
    },
    {
      weight: 5,
      arbitrary: fc
        .oneof(
          known.map((id) => `urn:uuid:${id}`),
          known.map((id) => `{${id}}`),
          known.map((id) => id.replaceAll('-', '')),
          known.map((id) => id.slice(0, 35)),
          known.map((id) => `${id}0`),
          known.map((id) => `${id}%00`),
          known.map((id) => `${id};x`),
          fc.constantFrom('', 'null', 'undefined', '..', '.', '%2e%2e', '%zz', '%', '%c3%28', '%ff', '\u00e9', '%E2%82', 'a'.repeat(120), 'a'.repeat(5000), '0', '-1', '00000000-0000-0000-0000-00000000000g'),
          fc.string({ maxLength: 20 }).map((s) => encodeURIComponent(s)),
        )
        .map((id) => ({ id, ...part('invalid', 'malformed id') })),
    },
  );
}

// A segment of a proxied path: plain ones, and every way of leaving the agent's base path.
const forwardSegment: fc.Arbitrary<{ s: string } & Part> = fc.oneof(
  { weight: 14, arbitrary: fc.constantFrom('echo', 'tools', 'run', 'a.b', '...', 'x-y_z', '%20', 'f%C3%A9', 'status', '200', '404', '500', '~user', 'a;b=c').map((s) => ({ s, ...part('valid') })) },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9._~-]{1,12}$/).filter((s) => s !== '.' && s !== '..').map((s) => ({ s, ...part('valid') })) },
  {
    weight: 3,
    arbitrary: fc
      .constantFrom('.', '..', '%2e', '%2E%2e', '.%2e', '%2e.', '%252e%252e', '%25252e%25252e', '..;x', '.;', '%2f', '%2F', '%252f', '%5c', '%5C', '\\', 'a\\..', '..%2f', '%c0%ae%c0%ae')
      .map((s) => ({ s, ...part(s === '%c0%ae%c0%ae' ? 'unsure' : 'invalid', `escaping segment ${s}`) })),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom('', '%00', '%0a', '%zz', '%', '%c3%28', '%ff', '\u00e9\u00ff', 'a'.repeat(3000), '%7F').map((s) => ({ s, ...part('unsure', `odd segment ${JSON.stringify(s.slice(0, 20))}`) })),
  },
);

const agentNameValue = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('main', 'second').map((v) => ({ v, ...part('valid') })) },
  {
    weight: 3,
    arbitrary: fc
      .constantFrom('nope', '', 'Main', ' main', 'main ', '..', 'a'.repeat(65), 'a'.repeat(5000), '%00', '\u00e9', '-x', 'main,second', '*')
      .map((v) => ({ v, ...part('invalid', `agent ${JSON.stringify(v.slice(0, 20))}`) })),
  },
);

// Query strings: agent selection and junk. `chat` routes know `agent`; others ignore queries.
function query(scope: Scope, proxy: boolean): fc.Arbitrary<{ q: string } & Part> {
  const junk = fc.oneof(
    fc.constantFrom('?', '?&&&', '?=', '?a', '?a=1&a=2', '?%zz=1', '?a=%zz', '?a[b]=1', '?__proto__=x', '?constructor[prototype][x]=1', `?x=${'q'.repeat(3000)}`, '?a=%00'),
    fc.string({ maxLength: 30 }).map((s) => `?${encodeURIComponent(s)}=${encodeURIComponent(s)}`),
  );
  const agentParam = agentNameValue.map(({ v, ...p }) => ({ q: `?agent=${encodeURIComponent(v)}`, ...p }));
  const junkValidity: Validity = scope === 'chat' && !proxy ? 'unsure' : 'valid';
  const selection: Validity = scope === 'chat' ? 'invalid' : 'valid';
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant({ q: '', ...part('valid') }) },
    { weight: scope === 'chat' ? 5 : 1, arbitrary: agentParam.map((a) => (scope === 'chat' ? a : { q: a.q, ...part('valid') })) },
    { weight: 2, arbitrary: junk.map((q) => ({ q, ...part(junkValidity, 'junk query') })) },
    {
      weight: scope === 'chat' ? 2 : 0,
      arbitrary: fc.constantFrom('?agent=main&agent=second', '?agent=main&agent=main', '?agent', '?agent=%zz', '?agent[]=main', '?agent=main&agent=', '?Agent=main', '?agent=ma%69n').map((q) => ({
        q,
        // The proxy forwards any parameter but `agent` itself to the agent.
        ...part(['?Agent=main', '?agent=ma%69n', '?agent=main&agent=main'].includes(q) ? 'unsure' : proxy && q === '?agent[]=main' ? 'valid' : selection, `agent query ${q}`),
      })),
    },
  );
}

// Extra headers: odd content negotiation, request ids, invalid bytes, oversized and repeated ones.
// (No Upgrade headers: a POST with Upgrade: h2c is a known, separate defect.)
const extraHeaders: fc.Arbitrary<{ headers: Array<[string, Buffer]> } & Part> = fc
  .array(
    fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom<[string, string]>(['Accept', '*/*'], ['Accept', 'text/html'], ['Accept', 'application/problem+json'], ['Accept-Encoding', 'gzip, br'], ['X-Request-Id', 'abc'], ['X-Request-Id', 'x'.repeat(300)], ['X-Request-Id', '\u00e9\u00e9'], ['Cookie', 'a=b'], ['X-Forwarded-For', 'not an ip'], ['User-Agent', ''], ['X-Custom', ''], ['Forwarded', 'for=unknown'], ['Accept-Version', '1.x'], ['Expect', '100-continue'], ['Te', 'trailers']).map(([n, v]) => ({ h: [n, latin1(v)] as [string, Buffer], ...part('valid') })) },
      { weight: 1, arbitrary: fc.constantFrom<[string, string]>(['Content-Encoding', 'gzip'], ['Expect', 'x-odd'], ['Range', 'bytes=0-1'], ['If-None-Match', '*']).map(([n, v]) => ({ h: [n, latin1(v)] as [string, Buffer], ...part('unsure', `header ${n}: ${v}`) })) },
      { weight: 1, arbitrary: fc.constantFrom<[string, string]>(['X-Big', 'a'.repeat(20_000)], ['X-Ctl', 'a\u0001b'], ['X-Nul', 'a\u0000b'], ['X-Del', 'a\u007fb'], ['Bad Name', 'x'], ['X(y)', 'z'], ['', 'empty-name'], ['X-CR', 'a\rb']).map(([n, v]) => ({ h: [n, latin1(v)] as [string, Buffer], ...part('invalid', `bad header ${JSON.stringify(n)}`) })) },
      { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 20 }).map((b) => ({ h: ['X-Bytes', Buffer.from(b)] as [string, Buffer], ...part('unsure', 'raw header bytes') })) },
      { weight: 1, arbitrary: fc.constantFrom('Content-Length: 5', 'Transfer-Encoding: chunked', 'Transfer-Encoding: gzip', 'Content-Length: -1', 'Content-Length: abc').map((line) => ({ h: line.split(': ') as [string, string] }).h).map(([n, v]) => ({ h: [n, latin1(v)] as [string, Buffer], ...part('unsure', `framing header ${n}: ${v}`) })) },
    ),
    { maxLength: 2 },
  )
  .map((list) => ({ headers: list.map((x) => x.h), ...part(worst(...list.map((x) => x.validity)), list.map((x) => x.note).filter(Boolean).join(', ') || undefined) }));

// ---- bodies -----------------------------------------------------------------------------

type BodyKind = 'workspace' | 'build' | 'token' | 'none' | 'stream';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
// eslint-disable-next-line no-control-regex -- control characters are what makes text odd
const CONTROL = /[\u0000-\u001f\u007f]/;

function keysWithin(v: Record<string, unknown>, allowed: string[]): boolean {
  return Object.keys(v).every((k) => allowed.includes(k));
}

function textValidity(v: unknown, max: number): Validity {
  if (typeof v !== 'string' || v.length === 0) return 'invalid';
  if (v.length > max || CONTROL.test(v)) return 'unsure';
  return 'valid';
}

/** contract §4.3, written independently of the route schemas. */
function validWorkspaceBody(v: unknown): Validity {
  if (!isObject(v) || !keysWithin(v, ['ownerId', 'name'])) return 'invalid';
  if (typeof v.ownerId !== 'string' || !UUID_RE.test(v.ownerId)) return 'invalid';
  return textValidity(v.name, 200);
}

function validAddress(v: unknown): Validity {
  if (typeof v !== 'string' || v === '') return 'invalid';
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return 'invalid';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'invalid';
  if (url.username || url.password || v.includes('?') || v.includes('#')) return 'invalid';
  if (CONTROL.test(v) || /\s/.test(v) || v.length > 2048 || url.href !== v) return 'unsure';
  return 'valid';
}

function validInteger(v: unknown, min: number, max: number): Validity {
  if (v === undefined) return 'valid';
  if (typeof v !== 'number' || !Number.isInteger(v)) return 'invalid';
  return v < min ? 'invalid' : v > max ? 'unsure' : 'valid';
}

function validBuildBody(v: unknown): Validity {
  if (!isObject(v) || !keysWithin(v, ['transition', 'agents'])) return 'invalid';
  if (v.transition !== 'start' && v.transition !== 'stop' && v.transition !== 'delete') return 'invalid';
  if (v.agents === undefined) return 'valid';
  if (!Array.isArray(v.agents)) return 'invalid';
  if (v.transition !== 'start' && v.agents.length > 0) return 'invalid';
  const names = new Set<unknown>();
  const parts: Validity[] = [v.agents.length > 64 ? 'unsure' : 'valid'];
  for (const a of v.agents as unknown[]) {
    if (!isObject(a) || !keysWithin(a, ['name', 'address', 'connectionTimeoutSeconds', 'displayOrder'])) return 'invalid';
    if (typeof a.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(a.name) || names.has(a.name)) return 'invalid';
    names.add(a.name);
    parts.push(a.name.length > 64 ? 'unsure' : 'valid', validAddress(a.address), validInteger(a.connectionTimeoutSeconds, 0, 86_400), validInteger(a.displayOrder, -1_000_000, 1_000_000));
    if (a.displayOrder !== undefined && typeof a.displayOrder === 'number' && a.displayOrder < -1_000_000) parts.push('unsure');
  }
  return worst(...parts);
}

function validTokenBody(v: unknown): Validity {
  if (!isObject(v) || !keysWithin(v, ['name', 'scope', 'ownerId'])) return 'invalid';
  if (v.scope !== 'conn' && v.scope !== 'admin') return 'invalid';
  if (v.ownerId !== undefined && (typeof v.ownerId !== 'string' || !UUID_RE.test(v.ownerId) || v.scope === 'admin')) return 'invalid';
  return textValidity(v.name, 200);
}

const VALIDATE: Record<'workspace' | 'build' | 'token', (v: unknown) => Validity> = {
  workspace: validWorkspaceBody,
  build: validBuildBody,
  token: validTokenBody,
};

const oddText = fc.oneof(
  fc.string({ minLength: 1, maxLength: 30 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }),
  fc.constantFrom('a\u0000b', '\u0000', '\ud800', 'x\udfff', '\u202e', ' ', '\n', 'é', '"; drop table workspaces; --', 'a'.repeat(201), 'n'.repeat(BODY_LIMIT + 10)),
);

const goodAgent = fc.record(
  {
    name: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,10}$/),
    address: fc.constantFrom('http://127.0.0.1:9', 'https://agent.example.com/base', 'http://[::1]:9/x'),
    connectionTimeoutSeconds: fc.integer({ min: 0, max: 600 }),
    displayOrder: fc.integer({ min: -5, max: 5 }),
  },
  { requiredKeys: ['name', 'address'] },
);

function goodBody(kind: 'workspace' | 'build' | 'token'): fc.Arbitrary<Record<string, unknown>> {
  switch (kind) {
    case 'workspace':
      return fc.record({ ownerId: fc.uuid(), name: fc.stringMatching(/^[a-z][a-z0-9 -]{0,20}$/) });
    case 'build':
      return fc.oneof(
        fc.record({ transition: fc.constant('start'), agents: fc.uniqueArray(goodAgent, { maxLength: 3, selector: (a) => a.name }) }),
        fc.record({ transition: fc.constantFrom('stop', 'delete') }),
      );
    case 'token':
      return fc.oneof(
        fc.record({ name: fc.stringMatching(/^[a-z]{1,10}$/), scope: fc.constant('conn'), ownerId: fc.uuid() }, { requiredKeys: ['name', 'scope'] }),
        fc.record({ name: fc.stringMatching(/^[a-z]{1,10}$/), scope: fc.constant('admin') }),
      );
  }
}

const badAddress = fc.constantFrom(
  'ftp://h/x',
  'http://user:pw@h',
  'http://h/?q=1',
  'http://h/#f',
  '/relative',
  'http://',
  'javascript:alert(1)',
  'http://h\u0000x/',
  'http://h/a\u0000b',
  '\u0000http://h/',
  ' http://h/ ',
  'http://h/\u00e9',
  'http://127.0.0.1:99999',
  'http://[::1/',
  `http://h/${'p'.repeat(3000)}`,
);

/** A valid body with one change: a field dropped, added, or given an odd value. */
function mutatedBody(kind: 'workspace' | 'build' | 'token'): fc.Arbitrary<unknown> {
  const odd = fc.oneof(
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    { weight: 2, arbitrary: oddText },
    { weight: 1, arbitrary: fc.constantFrom<unknown>(5, 1.5, -1, 1e300, true, null, [], {}, ['start'], 'start', '5', 86_401, 2 ** 31, -(2 ** 31) - 1) },
    { weight: 1, arbitrary: fc.uuid().map((u) => `urn:uuid:${u}`) },
    { weight: 1, arbitrary: badAddress },
  );
  return fc.tuple(goodBody(kind), fc.nat(), odd, fc.constantFrom('drop', 'set', 'add', 'agent')).map(([body, i, value, how]) => {
    const copy: Record<string, unknown> = structuredClone(body);
    const keys = Object.keys(copy);
    const key = keys[i % keys.length] ?? 'name';
    if (how === 'drop') delete copy[key];
    else if (how === 'set') copy[key] = value;
    else if (how === 'add') copy[['extra', '__proto__', 'constructor', 'id', 'agents', 'ownerId'][i % 6]!] = value;
    else if (Array.isArray(copy.agents) && copy.agents.length > 0) {
      const agents = copy.agents as Array<Record<string, unknown>>;
      const a = agents[i % agents.length]!;
      a[['name', 'address', 'connectionTimeoutSeconds', 'displayOrder', 'extra'][i % 5]!] = value;
    } else copy[key] = value;
    return copy;
  });
}

/** Serialized JSON, sometimes broken: truncated, deeply nested, with invalid UTF-8. */
function jsonBytes(kind: 'workspace' | 'build' | 'token'): fc.Arbitrary<{ bytes: Buffer } & Part> {
  const judged = (v: unknown, note: string) => ({ bytes: Buffer.from(JSON.stringify(v) ?? 'null'), ...part(VALIDATE[kind](v), note) });
  return fc.oneof(
    { weight: 12, arbitrary: goodBody(kind).map((v) => judged(v, 'good body')) },
    { weight: 8, arbitrary: mutatedBody(kind).map((v) => judged(v, 'mutated body')) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => judged(v, 'arbitrary JSON')) },
    {
      weight: 2,
      arbitrary: fc.tuple(goodBody(kind), fc.nat()).map(([v, n]) => {
        const s = JSON.stringify(v);
        return { bytes: Buffer.from(s.slice(0, n % s.length)), ...part('invalid', 'truncated JSON') };
      }),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(1_000, 5_000, 8_000).map((depth) => ({ bytes: Buffer.from(`{"name":${'['.repeat(depth)}${']'.repeat(depth)}}`), ...part('invalid', `nested ${depth} deep`) })),
    },
    {
      weight: 1,
      arbitrary: goodBody(kind).map((v) => {
        const s = Buffer.from(JSON.stringify(v));
        const at = s.indexOf('"', s.indexOf(':')) + 1;
        return { bytes: Buffer.concat([s.subarray(0, at), Buffer.from([0xff, 0xc3, 0x28]), s.subarray(at)]), ...part('unsure', 'invalid UTF-8 in a string') };
      }),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom('', ' ', 'null', '[]', '"x"', '{', '}', '{"a":1,}', "{'a':1}", '\ufeff{}', 'NaN', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}').map((s) => ({ bytes: Buffer.from(s), ...part('invalid', `junk JSON ${JSON.stringify(s)}`) })),
    },
    { weight: 1, arbitrary: fc.constant({ bytes: Buffer.from(`{"name":"${'x'.repeat(BODY_LIMIT)}"}`), ...part('invalid', 'over the body limit') }) },
  );
}

const contentType = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8').map((c) => ({ c, ...part('valid') })) },
  { weight: 1, arbitrary: fc.constantFrom('Application/JSON', 'application/json;charset=UTF-8', 'application/json ; charset=utf-8', 'application/json; charset=latin1').map((c) => ({ c, ...part('unsure', `content-type ${c}`) })) },
  {
    weight: 3,
    arbitrary: fc
      .constantFrom<string | undefined>(undefined, '', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/problem+json', 'application/jsonx', 'json', 'application/', '/', ';', '*/*', 'application/json, text/plain', '\u00e9/\u00e9', 'application/octet-stream')
      .map((c) => ({ c, ...part('invalid', `content-type ${String(c)}`) })),
  },
);

/** JSON that a parser guarding against prototype poisoning accepts. */
function plainJson(bytes: Buffer): boolean {
  // Fastify's JSON parser skips a leading byte-order mark, as JSON.parse does not.
  const text = bytes.toString('utf8').replace(/^\ufeff/, '');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return false;
  }
  return !poisoned(value);
}

/**
 * What Fastify's parser refuses as poisoning: a `__proto__` key, or a `constructor` object with a
 * `prototype` key, at any depth (walked with a stack: the generator nests deeper than recursion goes).
 */
function poisoned(root: unknown): boolean {
  const stack = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== 'object' || value === null) continue;
    for (const [key, inner] of Object.entries(value)) {
      if (key === '__proto__') return true;
      if (key === 'constructor' && typeof inner === 'object' && inner !== null && Object.hasOwn(inner, 'prototype')) return true;
      stack.push(inner);
    }
  }
  return false;
}

/** Body, content-type and framing for a route that takes `kind` of body. */
function bodyFor(kind: BodyKind): fc.Arbitrary<{ body: Buffer | undefined; ctype: string | undefined; framing: Req['framing'] } & Part> {
  const framing = fc.oneof(
    { weight: 10, arbitrary: fc.constant<Req['framing']>('length') },
    { weight: 2, arbitrary: fc.constant<Req['framing']>('chunked') },
    { weight: 1, arbitrary: fc.constant<Req['framing']>('truncated') },
  );
  const framed = (p: Part, f: Req['framing']): Part => (f === 'truncated' ? part('invalid', 'truncated body') : p);
  if (kind === 'stream') {
    // The proxy streams any body to the agent.
    return fc
      .tuple(
        fc.oneof(fc.constant(undefined), fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)), fc.constant(Buffer.alloc(BODY_LIMIT + 1, 0x61))),
        fc.constantFrom(undefined, 'application/json', 'text/plain', 'application/octet-stream', '\u00e9'),
        framing,
      )
      .map(([body, ctype, f]) => ({ body, ctype, framing: body ? f : ('length' as const), ...framed(body && body.length > BODY_LIMIT ? part('invalid', 'over the body limit') : part('valid'), body ? f : 'length') }));
  }
  if (kind === 'none') {
    return fc.oneof(
      { weight: 8, arbitrary: fc.constant({ body: undefined, ctype: undefined, framing: 'length' as const, ...part('valid') }) },
      {
        weight: 2,
        // A route without a body may ignore a well-formed JSON one; anything else is refused.
        arbitrary: fc.tuple(jsonBytes('workspace'), contentType, framing).map(([b, c, f]) => {
          // Fastify also parses text/plain (into a string), which such a route then ignores.
          const ignorable = b.bytes.length <= BODY_LIMIT && ((c.validity !== 'invalid' && (plainJson(b.bytes) || b.validity === 'unsure')) || c.c === 'text/plain');
          return { body: b.bytes, ctype: c.c, framing: f, ...framed(part(ignorable ? 'unsure' : 'invalid', `unexpected body, ${c.note ?? ''} ${b.note ?? ''}`), f) };
        }),
      },
    );
  }
  return fc.oneof(
    { weight: 12, arbitrary: fc.tuple(jsonBytes(kind), contentType, framing).map(([b, c, f]) => ({ body: b.bytes, ctype: c.c, framing: f, ...framed(part(worst(b.validity, c.validity), [b.note, c.note].filter(Boolean).join(', ')), f) })) },
    { weight: 1, arbitrary: fc.constant({ body: undefined, ctype: undefined, framing: 'length' as const, ...part('invalid', 'no body') }) },
    { weight: 1, arbitrary: fc.constant({ body: undefined, ctype: 'application/json', framing: 'length' as const, ...part('invalid', 'no body, JSON content-type') }) },
  );
}

const OTHER_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT', 'PROPFIND', 'SEARCH', 'QUERY', 'LINK', 'get', 'FOO', 'M-SEARCH', 'G ET', 'GET\u00e9'];

interface RouteSpec {
  name: string;
  methods: string[];
  scope: Scope;
  body: BodyKind;
  writes: boolean;
  path: fc.Arbitrary<{ path: string } & Part>;
  /** Workspace routes of chat scope: the owner-scoped token sees only the proxied workspace. */
  ownerScoped?: boolean;
}

const readIds = () => [proxied.id, noAgent, deleted, ...scratch.map((w) => w.id)];
// Generated writes never touch the proxied workspace, so the proxy stays reachable.
const writeIds = () => [noAgent, deleted, ...scratch.map((w) => w.id)];
const tokenIds = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 20 }).map((i) => ({ id: scratchTokenIds[i % scratchTokenIds.length]!, ...part('valid') })) },
  { weight: 1, arbitrary: fc.uuid().map((id) => ({ id, ...part('valid', 'unknown token id') })) },
  { weight: 2, arbitrary: fc.constantFrom('x', '', '%zz', 'a'.repeat(300), `urn:uuid:${randomUUID()}`, '{00000000-0000-0000-0000-000000000000}').map((id) => ({ id, ...part('invalid', 'malformed token id') })) },
);

const wsPath = (pool: () => string[], suffix: string) => workspaceId(pool).map(({ id, ...p }) => ({ path: `/workspaces/${id}${suffix}`, ...p }));

const ROUTES: RouteSpec[] = [
  { name: 'PUT /workspaces/:id', methods: ['PUT'], scope: 'admin', body: 'workspace', writes: true, path: wsPath(writeIds, '') },
  { name: 'GET /workspaces/:id', methods: ['GET', 'HEAD'], scope: 'admin', body: 'none', writes: false, path: wsPath(readIds, '') },
  { name: 'DELETE /workspaces/:id', methods: ['DELETE'], scope: 'admin', body: 'none', writes: true, path: wsPath(writeIds, '') },
  { name: 'POST /workspaces/:id/builds', methods: ['POST'], scope: 'admin', body: 'build', writes: true, path: wsPath(writeIds, '/builds') },
  { name: 'POST /tokens', methods: ['POST'], scope: 'admin', body: 'token', writes: true, path: fc.constant({ path: '/tokens', ...part('valid') }) },
  { name: 'DELETE /tokens/:id', methods: ['DELETE'], scope: 'admin', body: 'none', writes: true, path: tokenIds.map(({ id, ...p }) => ({ path: `/tokens/${id}`, ...p })) },
  { name: 'POST /agent/heartbeat', methods: ['POST'], scope: 'agent', body: 'none', writes: true, path: fc.constant({ path: '/agent/heartbeat', ...part('valid') }) },
  { name: 'POST /agent/disconnect', methods: ['POST'], scope: 'agent', body: 'none', writes: true, path: fc.constant({ path: '/agent/disconnect', ...part('valid') }) },
  { name: 'POST /workspaces/:id/conn', methods: ['POST'], scope: 'chat', body: 'none', writes: false, path: wsPath(readIds, '/conn'), ownerScoped: true },
  { name: 'GET /workspaces/:id/agent', methods: ['GET', 'HEAD'], scope: 'chat', body: 'none', writes: false, path: wsPath(readIds, '/agent'), ownerScoped: true },
  {
    name: 'ANY /workspaces/:id/conn/*',
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    scope: 'chat',
    body: 'stream',
    writes: false,
    ownerScoped: true,
    path: fc
      .tuple(
        // No id: the proxied workspace's (an empty string is one of the malformed ids).
        fc.oneof({ weight: 6, arbitrary: fc.constant({ id: undefined as string | undefined, ...part('valid') }) }, { weight: 1, arbitrary: workspaceId(readIds) }),
        fc.array(forwardSegment, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
      )
      .map(([ws, segments, slash]) => ({
        path: `/workspaces/${ws.id ?? proxied.id}/conn/${segments.map((s) => s.s).join('/')}${slash ? '/' : ''}`,
        ...part(worst(ws.validity, ...segments.map((s) => s.validity)), [ws.note, ...segments.map((s) => s.note)].filter(Boolean).join(', ') || undefined),
      })),
  },
  {
    name: 'ops',
    methods: ['GET', 'HEAD'],
    scope: 'public',
    body: 'none',
    writes: false,
    path: fc.constantFrom('/healthz', '/readyz', '/metrics', '/openapi.json').map((path) => ({ path, ...part('valid') })),
  },
];

// Paths of no route, and known paths bent out of shape.
const strayPath: fc.Arbitrary<{ path: string } & Part> = fc
  .oneof(
    fc.constantFrom('/', '*', '', '//', '/workspaces', '/workspaces/', '/tokens/', '/agent', '/agent/keys', '/healthz/', '/HEALTHZ', '/./healthz', '/../healthz', '/healthz%00', '/%2e%2e/healthz', '/workspaces/%zz', '/\\healthz', 'http://127.0.0.1/healthz', 'healthz', `/${'x'.repeat(9000)}`, '/%c3%28', '/%ff%fe', '/\u00e9', '/workspaces//conn', '/healthz#frag', '/healthz?x#y'),
    fc.array(fc.constantFrom('workspaces', 'tokens', 'agent', 'conn', 'builds', '..', '.', '%2e', '%2f', '%', '\\', '', 'x', randomUUID()), { maxLength: 6 }).map((s) => `/${s.join('/')}`),
    fc.string({ maxLength: 40 }).map((s) => `/${s}`),
    fc.string({ unit: 'binary', maxLength: 20 }).map((s) => `/${Buffer.from(s).toString('latin1')}`),
  )
  .map((path) => ({ path, ...part('unsure', 'stray path') }));

function decoded(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function request(spec: RouteSpec): fc.Arbitrary<Req> {
  const methodArb = fc.oneof(
    { weight: 9, arbitrary: fc.constantFrom(...spec.methods).map((m) => ({ m, ...part('valid') })) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(...OTHER_METHODS.filter((m) => !spec.methods.includes(m)))
        // Another route may serve the same path with that method (GET and PUT /workspaces/:id).
        .map((m) => ({ m, ...part(['GET', 'HEAD', 'POST', 'PUT', 'DELETE'].includes(m) ? 'unsure' : 'invalid', `method ${m}`) })),
    },
  );
  const pathArb = fc.oneof({ weight: 12, arbitrary: spec.path }, { weight: 1, arbitrary: strayPath });
  return fc
    .record({
      method: methodArb,
      path: pathArb,
      query: query(spec.scope, spec.body === 'stream'),
      auth: authorization(spec.scope),
      extra: extraHeaders,
      body: bodyFor(spec.body),
      agentHeader: spec.body === 'stream' ? fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: agentNameValue }) : fc.constant(null),
    })
    .map(({ method, path, query: q, auth, extra, body, agentHeader }) => {
      const headers: Array<[string, Buffer]> = [...auth.headers, ...extra.headers];
      if (body.ctype !== undefined) headers.push(['Content-Type', latin1(body.ctype)]);
      // A GET or HEAD body has no meaning; ignoring it is as right as refusing it.
      const bodyPart = body.body !== undefined && (method.m === 'GET' || method.m === 'HEAD') && body.validity === 'invalid' ? part('unsure', body.note) : body;
      const parts: Part[] = [method, path, q, auth, extra, bodyPart];
      // A body declared by a header of its own but never sent: GET and HEAD may ignore it.
      if (headers.some(([n]) => /^(content-length|transfer-encoding)$/i.test(n)) && method.m !== 'GET' && method.m !== 'HEAD') {
        parts.push(part('invalid', 'framing header of its own'));
      }
      if (agentHeader) {
        headers.push(['X-Agentgate-Agent', latin1(agentHeader.v)]);
        // Spaces around a header value are not part of it (RFC 9110, 5.5).
        const name = agentHeader.v.trim();
        parts.push(name === 'main' || name === 'second' ? part('valid') : agentHeader);
        const fromQuery = /[?&]agent=([^&]*)/.exec(q.q)?.[1];
        // The gate compares the decoded name: `ma%69n` is `main`.
        const queried = fromQuery === undefined ? undefined : decodedOr(fromQuery);
        if (queried !== undefined && queried !== name) parts.push(part('invalid', 'query and header name different agents'));
      }
      // The owner-scoped token sees only the proxied workspace's owner.
      if (spec.ownerScoped && auth.note === 'owner-scoped conn token' && !decoded(path.path).toLowerCase().includes(proxied.id)) {
        parts.push(part('invalid', 'not visible to the token'));
      }
      // A request cut short keeps its EOF for last; anything else has a complete body.
      return {
        route: spec.name,
        method: method.m,
        target: latin1(path.path + q.q),
        headers,
        body: body.body,
        framing: body.framing,
        // A stray path may land on any route (an operations route needs no token): not judged.
        // So may a method another route serves on the same path: the body, query and token rules
        // judged here are the first route's, not that one's.
        validity: path.note === 'stray path' || method.validity === 'unsure' ? 'unsure' : worst(...parts.map((p) => p.validity)),
        notes: parts.map((p) => p.note).filter((n): n is string => Boolean(n)),
        writes: spec.writes,
      };
    });
}

// Whole requests as bytes: broken request lines, versions, header blocks, and plain noise.
const garbage: fc.Arbitrary<Req> = fc
  .oneof(
    fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => Buffer.from(b)),
    fc.string({ maxLength: 100 }).map((s) => Buffer.from(s)),
    fc
      .tuple(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'CONNECT', 'PRI', 'get', '', 'GET GET', '\u00ff'),
        fc.constantFrom('/healthz', '/tokens', `/workspaces/${randomUUID()}`, '*', '127.0.0.1:1', 'http://x/healthz', '', '/a b', '/\u0000', '/\u00ff'),
        fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'HTTP/1.10', 'http/1.1', 'HTTP/1', '', 'HTTP/1.1 extra'),
        fc.array(fc.constantFrom('Host: x', 'Host: x', 'Host:', 'Content-Length: 3', 'Content-Length: 3', 'Content-Length: 4', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked, gzip', ': x', 'x', ' folded: y', '\tcontinued', 'A: \u0000', `Authorization: Bearer ${ENV_ADMIN_TOKEN}`), { maxLength: 5 }),
        fc.constantFrom('\r\n', '\n', '\r'),
        fc.constantFrom('', 'abc', '0\r\n\r\n', '3\r\nabc\r\n', 'zz\r\n'),
      )
      .map(([m, target, version, lines, eol, body]) => Buffer.from([`${m} ${target} ${version}`, ...lines, '', body].join(eol), 'latin1')),
  )
  .map((raw) => ({
    route: 'garbage',
    method: raw.subarray(0, 5).toString('latin1').startsWith('HEAD') ? 'HEAD' : 'RAW',
    target: Buffer.alloc(0),
    headers: [],
    body: undefined,
    // The client half-closes after its bytes: the server has all there is.
    framing: 'truncated' as const,
    validity: raw.includes(ENV_ADMIN_TOKEN) || raw.includes('/healthz') ? ('unsure' as const) : ('invalid' as const),
    notes: ['raw bytes'],
    writes: false,
    raw,
  }));

async function run(name: string, arb: fc.Arbitrary<Req>, numRuns: number): Promise<void> {
  // Counterexamples print as the request they send, not as byte arrays.
  const printable = arb.map((req) => Object.assign(req, { [fc.toStringMethod]: () => describeReq(req) }));
  tallies = new Map();
  try {
    await fc.assert(fc.asyncProperty(printable, async (req) => void (await check(req))), { numRuns, seed: SEED, path: PATH, endOnFailure: false, interruptAfterTimeLimit: 120_000 });
  } finally {
    const counts = [...tallies].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`);
    process.stderr.write(`bad-input ${name}: ${counts.join(', ')}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the properties, kept as explicit examples
// ---------------------------------------------------------------------------------------------

function example(route: string, method: string, target: string, opts: { token?: string; body?: string | Buffer; ctype?: string; validity?: Validity; writes?: boolean } = {}): Req {
  const headers: Array<[string, Buffer]> = [];
  if (opts.token !== undefined) headers.push(['Authorization', latin1(`Bearer ${opts.token}`)]);
  if (opts.ctype !== undefined) headers.push(['Content-Type', latin1(opts.ctype)]);
  return {
    route,
    method,
    target: latin1(target),
    headers,
    body: opts.body === undefined ? undefined : Buffer.from(opts.body),
    framing: 'length',
    validity: opts.validity ?? 'invalid',
    notes: ['example'],
    writes: opts.writes ?? false,
  };
}

/** Runs the property on one request and expects a problem with `code`. */
async function expectProblem(req: Req, code: string): Promise<void> {
  const outcome = await check(req);
  expect(outcome.kind).toBe('answer');
  if (outcome.kind !== 'answer') return;
  expect({ status: outcome.status, code: (JSON.parse(outcome.body.toString('utf8')) as { code: string }).code }).toEqual({ status: SPEC_CODES[code], code });
}

function rawExample(bytes: string | Buffer): Req {
  return { ...example('raw', 'RAW', ''), raw: typeof bytes === 'string' ? latin1(bytes) : bytes, framing: 'truncated' };
}

describe('regressions found by the properties', () => {
  const admin = ENV_ADMIN_TOKEN;
  const json = 'application/json';

  it('router errors (bad percent-encoding, overlong parameter) answer problem+json, not Fastify JSON', async () => {
    await expectProblem(example('GET /workspaces/:id', 'GET', '/workspaces/%zz', { token: admin }), 'INVALID_REQUEST');
    await expectProblem(example('GET /workspaces/:id', 'GET', '/workspaces/%c3%28', { token: admin }), 'INVALID_REQUEST');
    await expectProblem(example('GET /workspaces/:id', 'GET', `/workspaces/${'a'.repeat(120)}`, { token: admin }), 'INVALID_REQUEST');
  });

  it("requests Node's parser rejects answer problem+json, not Fastify JSON", async () => {
    await expectProblem(rawExample('\u0000'), 'INVALID_REQUEST');
    await expectProblem(rawExample('GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n'), 'INVALID_REQUEST');
    await expectProblem(rawExample(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 'INVALID_REQUEST');
    await expectProblem(rawExample('POST /tokens HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n'), 'INVALID_REQUEST');
  });

  it('an HTTP/1.1 request without Host, and an Expect other than 100-continue, answer problem+json', async () => {
    await expectProblem(rawExample('GET /healthz HTTP/1.1\r\n\r\n'), 'INVALID_REQUEST');
    const expectOdd = example('GET /workspaces/:id', 'GET', `/workspaces/${proxied.id}`, { token: admin });
    expectOdd.headers.push(['Expect', latin1('x-odd')]);
    await expectProblem(expectOdd, 'INVALID_REQUEST');
  });

  it('CONNECT, which no route serves, is NOT_FOUND as problem+json, not a dropped connection', async () => {
    await expectProblem(example('CONNECT', 'CONNECT', '127.0.0.1:1', { token: admin }), 'NOT_FOUND');
    await expectProblem(example('CONNECT', 'CONNECT', `/workspaces/${proxied.id}/conn/x`, { token: admin }), 'NOT_FOUND');
  });

  it('a urn:uuid: id, which the uuid format admits and PostgreSQL refuses, is INVALID_REQUEST, not a 500', async () => {
    await expectProblem(example('GET /workspaces/:id', 'GET', `/workspaces/urn:uuid:${proxied.id}`, { token: admin }), 'INVALID_REQUEST');
    await expectProblem(example('POST /workspaces/:id/conn', 'POST', `/workspaces/urn:uuid:${proxied.id}/conn`, { token: connToken }), 'INVALID_REQUEST');
    await expectProblem(example('DELETE /tokens/:id', 'DELETE', `/tokens/urn:uuid:${randomUUID()}`, { token: admin }), 'INVALID_REQUEST');
    const body = JSON.stringify({ ownerId: `urn:uuid:${randomUUID()}`, name: 'w' });
    await expectProblem(example('PUT /workspaces/:id', 'PUT', `/workspaces/${randomUUID()}`, { token: admin, body, ctype: json }), 'INVALID_REQUEST');
  });

  it('a body field of the wrong JSON type is INVALID_REQUEST, not coerced', async () => {
    await expectProblem(example('POST /tokens', 'POST', '/tokens', { token: admin, body: '{"name":5,"scope":"admin"}', ctype: json }), 'INVALID_REQUEST');
    await expectProblem(example('POST /tokens', 'POST', '/tokens', { token: admin, body: '{"name":"n","scope":["conn"]}', ctype: json }), 'INVALID_REQUEST');
    const build = (b: object) => example('POST /workspaces/:id/builds', 'POST', `/workspaces/${scratch[2]!.id}/builds`, { token: admin, body: JSON.stringify(b), ctype: json });
    await expectProblem(build({ transition: ['stop'] }), 'INVALID_REQUEST');
    await expectProblem(build({ transition: 'start', agents: { name: 'a', address: 'http://127.0.0.1:9' } }), 'INVALID_REQUEST');
    await expectProblem(build({ transition: 'start', agents: [{ name: 'a', address: 'http://127.0.0.1:9', displayOrder: '1' }] }), 'INVALID_REQUEST');
  });

  it('NUL in stored text (names, addresses) is INVALID_REQUEST, not a 500', async () => {
    await expectProblem(example('POST /tokens', 'POST', '/tokens', { token: admin, body: '{"name":"a\\u0000b","scope":"admin"}', ctype: json }), 'INVALID_REQUEST');
    const ws = JSON.stringify({ ownerId: randomUUID(), name: 'a\u0000' });
    await expectProblem(example('PUT /workspaces/:id', 'PUT', `/workspaces/${randomUUID()}`, { token: admin, body: ws, ctype: json }), 'INVALID_REQUEST');
    for (const address of ['http://h/a\u0000b', '\u0000http://h/', ' http://h/', 'http://h/\tx']) {
      const body = JSON.stringify({ transition: 'start', agents: [{ name: 'a', address }] });
      await expectProblem(example('POST /workspaces/:id/builds', 'POST', `/workspaces/${scratch[2]!.id}/builds`, { token: admin, body, ctype: json }), 'INVALID_REQUEST');
    }
  });
});

describe('bad input', () => {
  it('control routes answer valid requests, problem+json for the rest, and change nothing they refuse', async () => {
    const specs = ROUTES.filter((r) => r.scope === 'admin');
    await run('control', fc.oneof(...specs.map(request)), 260);
  }, 120_000);

  it('chat-server, agent and operations routes likewise', async () => {
    const specs = ROUTES.filter((r) => r.scope !== 'admin' && r.body !== 'stream');
    await run('chat/agent/ops', fc.oneof(...specs.map(request)), 180);
  }, 120_000);

  it('the proxy relays valid requests to the agent only, inside its base path', async () => {
    const spec = ROUTES.find((r) => r.body === 'stream')!;
    await run('proxy', request(spec), 220);
    // The property must have reached the agent, or it proved nothing about relaying.
    expect(agent.requests.filter((r) => !r.url.endsWith('/health')).length).toBeGreaterThan(10);
  }, 120_000);

  it('requests that are not HTTP, or barely, get problem+json or nothing, never a hang', async () => {
    await run('garbage', garbage, 150);
  }, 120_000);

  it('the agent’s own error statuses pass through; a clean request still succeeds', async () => {
    // Guards against a world so broken that every request is refused: the properties above
    // would then hold vacuously.
    await check(example('proxy', 'GET', `/workspaces/${proxied.id}/conn/status/503`, { token: connToken, validity: 'valid' }));
    const r = await exchange(port, serialize(example('proxy', 'GET', `/workspaces/${proxied.id}/conn/status/418`, { token: connToken, validity: 'valid' })), { halfClose: false, head: false });
    expect(r.kind === 'answer' && r.status === 418 && header(r, 'x-agentgate-upstream') === 'agent').toBe(true);
    const ok = await exchange(port, serialize(example('conn', 'POST', `/workspaces/${proxied.id}/conn`, { token: connToken, validity: 'valid' })), { halfClose: false, head: false });
    expect(ok.kind === 'answer' && ok.status).toBe(200);
  });
});
