// The authentication matrix (contract §4 and §6): every route against every kind of token,
// revocation on this process and on a second replica, deleted workspaces' agent tokens, and
// tokens kept out of the logs.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { sql, type KyselyPlugin, type QueryResult, type UnknownRow } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type Reply, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { TokenStore } from '../../src/auth/token-store.js';
import { createLogger } from '../../src/logger.js';
import { startEvents } from '../../src/plugins/events.js';
import { publishEvent } from '../../src/db/events.js';
import type { GateEvent } from '../../src/domain/events.js';
import { createApiToken } from '../../src/db/tokens-repo.js';
import { hashToken, mintToken } from '../../src/domain/tokens.js';

let database: TestDatabase;
/** The app most tests call. */
let a: TestApp;
/** A second replica on the same database. */
let b: TestApp;
/** Every secret this file sends; none may ever reach a log line or a database column in clear. */
const secrets = new Set<string>();
/** Log lines captured outside the apps (token stores driven directly). */
const extraLogs: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  a = await startTestApp({ database });
  b = await startTestApp({ database });
});
afterAll(async () => {
  await a?.close();
  await b?.close();
  await database?.drop();
});

function expectProblem(reply: Reply, status: number, code: string) {
  expect(reply.status).toBe(status);
  expect(reply.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(reply.body).toMatchObject({
    type: expect.any(String),
    status,
    code,
    title: expect.any(String),
    detail: expect.any(String),
    retryable: false,
  });
  expect(JSON.stringify(reply.body)).not.toMatch(/stack|select |insert |update |127\.0\.0\.1|at .*\.ts:/i);
}

/** Calls with a raw Authorization header (or none), so malformed headers can be sent. */
function callWith(app: TestApp, method: string, path: string, authorization: string | undefined, body?: unknown) {
  return app.call(method, path, {
    body,
    headers: authorization === undefined ? {} : { authorization },
  });
}

const bearer = (token: string) => `Bearer ${token}`;

async function createToken(app: TestApp, scope: 'admin' | 'conn', ownerId?: string): Promise<{ id: string; token: string }> {
  const reply = await app.call('POST', '/tokens', {
    token: ENV_ADMIN_TOKEN,
    body: { name: `auth-test ${scope}`, scope, ...(ownerId ? { ownerId } : {}) },
  });
  expect(reply.status).toBe(201);
  expect(reply.body).toEqual({ id: expect.any(String), token: expect.any(String) });
  const created = reply.body as { id: string; token: string };
  secrets.add(created.token);
  return created;
}

async function revokeToken(app: TestApp, id: string) {
  const reply = await app.call('DELETE', `/tokens/${id}`, { token: ENV_ADMIN_TOKEN });
  expect(reply.status).toBe(204);
  expect(reply.text).toBe('');
}

async function createWorkspace(app: TestApp): Promise<string> {
  const id = randomUUID();
  const reply = await app.call('PUT', `/workspaces/${id}`, { token: ENV_ADMIN_TOKEN, body: { ownerId: randomUUID(), name: 'auth' } });
  expect(reply.status).toBe(201);
  return id;
}

/** A workspace with a started build; its agents' tokens. */
async function startedWorkspace(app: TestApp, agentNames = ['main']): Promise<{ workspaceId: string; tokens: string[] }> {
  const workspaceId = await createWorkspace(app);
  const reply = await app.call('POST', `/workspaces/${workspaceId}/builds`, {
    token: ENV_ADMIN_TOKEN,
    body: { transition: 'start', agents: agentNames.map((name) => ({ name, address: 'http://127.0.0.1:1' })) },
  });
  expect(reply.status).toBe(201);
  const tokens = (reply.body.agents as Array<{ token: string }>).map((agent) => agent.token);
  for (const token of tokens) secrets.add(token);
  return { workspaceId, tokens };
}

/** Calls until the status is `want` or `withinMs` passed; the last status and the time it took. */
async function pollStatus(call: () => Promise<Reply>, want: number, withinMs = 2_000): Promise<{ reply: Reply; ms: number }> {
  const started = performance.now();
  for (;;) {
    const reply = await call();
    const ms = performance.now() - started;
    if (reply.status === want || ms > withinMs) return { reply, ms };
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// ---------------------------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------------------------

type Kind =
  | 'none'
  | 'garbage'
  | 'basic'
  | 'bearer without token'
  | 'valid token, wrong scheme'
  | 'two tokens'
  | 'overlong'
  | 'revoked conn'
  | 'revoked admin'
  | 'conn'
  | 'owner-scoped conn'
  | 'admin (database)'
  | 'admin (env)'
  | 'agent';

const KINDS: Kind[] = [
  'none',
  'garbage',
  'basic',
  'bearer without token',
  'valid token, wrong scheme',
  'two tokens',
  'overlong',
  'revoked conn',
  'revoked admin',
  'conn',
  'owner-scoped conn',
  'admin (database)',
  'admin (env)',
  'agent',
];

/** The Authorization header of each kind, filled before the matrix runs. */
const headerOf = new Map<Kind, string | undefined>();

const UNAUTHENTICATED_KINDS: ReadonlySet<Kind> = new Set<Kind>([
  'none',
  'garbage',
  'basic',
  'bearer without token',
  'valid token, wrong scheme',
  'two tokens',
  'overlong',
  'revoked conn',
  'revoked admin',
]);

type Access = 'admin' | 'agent' | 'public';
type Outcome = 'ok' | 401 | 403;

function expected(access: Access, kind: Kind): Outcome {
  if (access === 'public') return 'ok';
  if (UNAUTHENTICATED_KINDS.has(kind)) return 401;
  if (access === 'admin') return kind === 'admin (database)' || kind === 'admin (env)' ? 'ok' : 403;
  return kind === 'agent' ? 'ok' : 403;
}

interface Prepared {
  path: string;
  body?: unknown;
  /** Checks the success reply and its effect. */
  succeeded: (reply: Reply) => Promise<void>;
  /** Checks that a refused call changed nothing. */
  unchanged: () => Promise<void>;
}

interface RouteCase {
  method: string;
  route: string;
  access: Access;
  /** Fresh resources per call where the route mutates. */
  prepare: () => Promise<Prepared>;
}

const nothing = async () => undefined;
const agentPaths = { heartbeat: '/agent/heartbeat', disconnect: '/agent/disconnect' };

async function workspaceStatus(id: string): Promise<number> {
  return (await a.call('GET', `/workspaces/${id}`, { token: ENV_ADMIN_TOKEN })).status;
}

const ROUTES: RouteCase[] = [
  {
    method: 'PUT',
    route: '/workspaces/:id',
    access: 'admin',
    prepare: async () => {
      const id = randomUUID();
      const ownerId = randomUUID();
      return {
        path: `/workspaces/${id}`,
        body: { ownerId, name: 'matrix' },
        succeeded: async (reply) => {
          expect(reply.status).toBe(201);
          expect(reply.body).toMatchObject({ id, ownerId, name: 'matrix' });
          expect(await workspaceStatus(id)).toBe(200);
        },
        unchanged: async () => expect(await workspaceStatus(id)).toBe(404),
      };
    },
  },
  {
    method: 'GET',
    route: '/workspaces/:id',
    access: 'admin',
    prepare: async () => {
      const id = await createWorkspace(a);
      return {
        path: `/workspaces/${id}`,
        succeeded: async (reply) => {
          expect(reply.status).toBe(200);
          expect(reply.body).toMatchObject({ id, name: 'auth', latestBuild: null, agents: [] });
        },
        unchanged: nothing,
      };
    },
  },
  {
    method: 'DELETE',
    route: '/workspaces/:id',
    access: 'admin',
    prepare: async () => {
      const id = await createWorkspace(a);
      return {
        path: `/workspaces/${id}`,
        succeeded: async (reply) => {
          expect(reply.status).toBe(204);
          expect(reply.text).toBe('');
          expect(await workspaceStatus(id)).toBe(404);
        },
        unchanged: async () => expect(await workspaceStatus(id)).toBe(200),
      };
    },
  },
  {
    method: 'POST',
    route: '/workspaces/:id/builds',
    access: 'admin',
    prepare: async () => {
      const id = await createWorkspace(a);
      const latest = async (): Promise<unknown> =>
        (await a.call('GET', `/workspaces/${id}`, { token: ENV_ADMIN_TOKEN })).body.latestBuild;
      return {
        path: `/workspaces/${id}/builds`,
        body: { transition: 'start', agents: [{ name: 'main', address: 'http://127.0.0.1:1' }] },
        succeeded: async (reply) => {
          expect(reply.status).toBe(201);
          expect(reply.body.build).toMatchObject({ buildNumber: 1, transition: 'start' });
          for (const agent of reply.body.agents as Array<{ token: string }>) secrets.add(agent.token);
          expect(await latest()).toMatchObject({ buildNumber: 1 });
        },
        unchanged: async () => expect(await latest()).toBeNull(),
      };
    },
  },
  {
    method: 'POST',
    route: '/tokens',
    access: 'admin',
    prepare: async () => {
      const name = `matrix ${randomUUID()}`;
      const count = async () => {
        const row = await a.handle.db
          .selectFrom('api_tokens')
          .select((eb) => eb.fn.countAll<string>().as('n'))
          .where('name', '=', name)
          .executeTakeFirstOrThrow();
        return Number(row.n);
      };
      return {
        path: '/tokens',
        body: { name, scope: 'conn' },
        succeeded: async (reply) => {
          expect(reply.status).toBe(201);
          expect(reply.body).toEqual({ id: expect.any(String), token: expect.any(String) });
          secrets.add(reply.body.token);
          expect(await count()).toBe(1);
          // The new token authenticates at once (403 on an admin route, not 401).
          expectProblem(await a.call('GET', `/workspaces/${randomUUID()}`, { token: reply.body.token }), 403, 'FORBIDDEN');
        },
        unchanged: async () => expect(await count()).toBe(0),
      };
    },
  },
  {
    method: 'DELETE',
    route: '/tokens/:id',
    access: 'admin',
    prepare: async () => {
      const victim = await createToken(a, 'conn');
      const probe = () => a.call('GET', `/workspaces/${randomUUID()}`, { token: victim.token });
      return {
        path: `/tokens/${victim.id}`,
        succeeded: async (reply) => {
          expect(reply.status).toBe(204);
          expect(reply.text).toBe('');
          expectProblem(await probe(), 401, 'UNAUTHENTICATED');
        },
        unchanged: async () => expectProblem(await probe(), 403, 'FORBIDDEN'),
      };
    },
  },
  {
    method: 'POST',
    route: agentPaths.heartbeat,
    access: 'agent',
    prepare: async () => ({
      path: agentPaths.heartbeat,
      succeeded: async (reply) => {
        expect(reply.status).toBe(204);
        expect(reply.text).toBe('');
      },
      unchanged: nothing,
    }),
  },
  {
    method: 'POST',
    route: agentPaths.disconnect,
    access: 'agent',
    prepare: async () => ({
      path: agentPaths.disconnect,
      succeeded: async (reply) => {
        expect(reply.status).toBe(204);
        expect(reply.text).toBe('');
      },
      unchanged: nothing,
    }),
  },
  {
    method: 'GET',
    route: '/healthz',
    access: 'public',
    prepare: async () => ({
      path: '/healthz',
      succeeded: async (reply) => {
        expect(reply.status).toBe(200);
        expect(reply.body).toEqual({ status: 'ok' });
      },
      unchanged: nothing,
    }),
  },
  {
    method: 'GET',
    route: '/readyz',
    access: 'public',
    prepare: async () => ({
      path: '/readyz',
      succeeded: async (reply) => {
        expect(reply.status).toBe(200);
        expect(reply.body).toEqual({ status: 'ready' });
      },
      unchanged: nothing,
    }),
  },
  {
    method: 'GET',
    route: '/openapi.json',
    access: 'public',
    prepare: async () => ({
      path: '/openapi.json',
      succeeded: async (reply) => {
        expect(reply.status).toBe(200);
        expect(reply.body.openapi).toMatch(/^3\./);
        expect(reply.body.paths).toHaveProperty(['/tokens']);
      },
      unchanged: nothing,
    }),
  },
  {
    method: 'GET',
    route: '/metrics',
    access: 'public',
    prepare: async () => ({
      path: '/metrics',
      succeeded: async (reply) => {
        expect(reply.status).toBe(200);
        expect(reply.headers.get('content-type')).toMatch(/^text\/plain/);
        expect(reply.text).toMatch(/^# (HELP|TYPE) /m);
      },
      unchanged: nothing,
    }),
  },
];

describe('the auth matrix', () => {
  beforeAll(async () => {
    const garbage = `garbage-${randomBytes(24).toString('base64url')}`;
    const basic = `Basic ${randomBytes(12).toString('base64')}`;
    const overlong = randomBytes(400).toString('base64url'); // over the 512-character bound
    for (const s of [garbage, basic, overlong]) secrets.add(s);

    const conn = await createToken(a, 'conn');
    const ownerConn = await createToken(a, 'conn', randomUUID());
    const adminDb = await createToken(a, 'admin');
    const revokedConn = await createToken(a, 'conn');
    const revokedAdmin = await createToken(a, 'admin');
    // Used once before revocation, so a cache would hold them.
    expectProblem(await a.call('GET', `/workspaces/${randomUUID()}`, { token: revokedConn.token }), 403, 'FORBIDDEN');
    expectProblem(await a.call('GET', `/workspaces/${randomUUID()}`, { token: revokedAdmin.token }), 404, 'WORKSPACE_NOT_FOUND');
    await revokeToken(a, revokedConn.id);
    await revokeToken(a, revokedAdmin.id);
    const { tokens } = await startedWorkspace(a);
    secrets.add(ENV_ADMIN_TOKEN);

    headerOf.set('none', undefined);
    headerOf.set('garbage', bearer(garbage));
    headerOf.set('basic', basic);
    headerOf.set('bearer without token', 'Bearer');
    headerOf.set('valid token, wrong scheme', `Token ${ENV_ADMIN_TOKEN}`);
    headerOf.set('two tokens', `Bearer ${ENV_ADMIN_TOKEN} ${ENV_ADMIN_TOKEN}`);
    headerOf.set('overlong', bearer(overlong));
    headerOf.set('revoked conn', bearer(revokedConn.token));
    headerOf.set('revoked admin', bearer(revokedAdmin.token));
    headerOf.set('conn', bearer(conn.token));
    headerOf.set('owner-scoped conn', bearer(ownerConn.token));
    headerOf.set('admin (database)', bearer(adminDb.token));
    headerOf.set('admin (env)', bearer(ENV_ADMIN_TOKEN));
    headerOf.set('agent', bearer(tokens[0] ?? ''));
  });

  it('has a header for every kind', () => {
    expect([...headerOf.keys()].sort()).toEqual([...KINDS].sort());
  });

  for (const route of ROUTES) {
    for (const kind of KINDS) {
      const outcome = expected(route.access, kind);
      const label = outcome === 'ok' ? 'succeeds' : outcome === 401 ? '401 UNAUTHENTICATED' : '403 FORBIDDEN';
      it(`${route.method} ${route.route}, token: ${kind} → ${label}`, async () => {
        const prepared = await route.prepare();
        const reply = await callWith(a, route.method, prepared.path, headerOf.get(kind), prepared.body);
        if (outcome === 'ok') {
          await prepared.succeeded(reply);
          return;
        }
        expectProblem(reply, outcome, outcome === 401 ? 'UNAUTHENTICATED' : 'FORBIDDEN');
        await prepared.unchanged();
      });
    }
  }

  const unknown = [
    ['GET', '/nope'],
    ['GET', '/'],
    ['GET', '/workspaces'],
    ['PATCH', '/workspaces/:uuid'],
    ['POST', '/workspaces/:uuid'],
    ['GET', '/workspaces/:uuid/builds'],
    ['GET', '/tokens'],
    ['GET', '/tokens/:uuid'],
    ['PATCH', '/tokens/:uuid'],
    ['PUT', '/tokens/:uuid'],
    ['GET', '/agent/heartbeat'],
    ['PUT', '/agent/disconnect'],
    ['POST', '/healthz'],
    ['DELETE', '/metrics'],
  ] as const;
  for (const [method, route] of unknown) {
    for (const kind of KINDS) {
      it(`${method} ${route} (no such route), token: ${kind} → 404 NOT_FOUND`, async () => {
        const path = route.replace(':uuid', randomUUID());
        expectProblem(await callWith(a, method, path, headerOf.get(kind)), 404, 'NOT_FOUND');
      });
    }
  }

  it('authenticates the implicit HEAD of GET /workspaces/:id like the GET', async () => {
    const id = await createWorkspace(a);
    for (const kind of KINDS) {
      const reply = await a.call('HEAD', `/workspaces/${id}`, {
        headers: headerOf.get(kind) === undefined ? {} : { authorization: headerOf.get(kind) ?? '' },
      });
      const outcome = expected('admin', kind);
      expect({ kind, status: reply.status }).toEqual({ kind, status: outcome === 'ok' ? 200 : outcome });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Revocation and deletion
// ---------------------------------------------------------------------------------------------

describe('revocation on this process', () => {
  it('refuses an admin token at once after DELETE /tokens/:id, though it was just used', async () => {
    const { id, token } = await createToken(a, 'admin');
    const workspaceId = await createWorkspace(a);
    for (let i = 0; i < 3; i++) expect((await a.call('GET', `/workspaces/${workspaceId}`, { token })).status).toBe(200);
    await revokeToken(a, id);
    expectProblem(await a.call('GET', `/workspaces/${workspaceId}`, { token }), 401, 'UNAUTHENTICATED');
    expectProblem(await a.call('POST', '/tokens', { token, body: { name: 'x', scope: 'admin' } }), 401, 'UNAUTHENTICATED');
  });

  it('refuses a conn token at once after DELETE /tokens/:id (403 before, 401 after)', async () => {
    const { id, token } = await createToken(a, 'conn', randomUUID());
    expectProblem(await a.call('GET', `/workspaces/${randomUUID()}`, { token }), 403, 'FORBIDDEN');
    await revokeToken(a, id);
    expectProblem(await a.call('GET', `/workspaces/${randomUUID()}`, { token }), 401, 'UNAUTHENTICATED');
  });

  it('lets an admin token revoke itself, and refuses it on the next call', async () => {
    const { id, token } = await createToken(a, 'admin');
    const reply = await a.call('DELETE', `/tokens/${id}`, { token });
    expect(reply.status).toBe(204);
    expectProblem(await a.call('DELETE', `/tokens/${id}`, { token }), 401, 'UNAUTHENTICATED');
  });

  it('keeps other tokens working when one is revoked', async () => {
    const keep = await createToken(a, 'admin');
    const drop = await createToken(a, 'admin');
    const workspaceId = await createWorkspace(a);
    expect((await a.call('GET', `/workspaces/${workspaceId}`, { token: keep.token })).status).toBe(200);
    await revokeToken(a, drop.id);
    expect((await a.call('GET', `/workspaces/${workspaceId}`, { token: keep.token })).status).toBe(200);
    expect((await a.call('GET', `/workspaces/${workspaceId}`, { token: ENV_ADMIN_TOKEN })).status).toBe(200);
  });
});

describe('revocation on a second replica (NOTIFY)', () => {
  it('accepts on B a token created on A at once', async () => {
    const { token } = await createToken(a, 'admin');
    const workspaceId = await createWorkspace(a);
    expect((await b.call('GET', `/workspaces/${workspaceId}`, { token })).status).toBe(200);
  });

  it('refuses on B, within 2 s, a token B cached and A revoked', async () => {
    const { id, token } = await createToken(a, 'admin');
    const workspaceId = await createWorkspace(a);
    for (let i = 0; i < 3; i++) expect((await b.call('GET', `/workspaces/${workspaceId}`, { token })).status).toBe(200);
    await revokeToken(a, id);
    const { reply, ms } = await pollStatus(() => b.call('GET', `/workspaces/${workspaceId}`, { token }), 401);
    expectProblem(reply, 401, 'UNAUTHENTICATED');
    expect(ms).toBeLessThan(2_000);
  });

  it('refuses on both, within 2 s, a token revoked by its id typed in upper case', async () => {
    const { id, token } = await createToken(a, 'admin');
    const workspaceId = await createWorkspace(a);
    for (const app of [a, b]) expect((await app.call('GET', `/workspaces/${workspaceId.toUpperCase()}`, { token })).status).toBe(200);
    expect((await a.call('DELETE', `/tokens/${id.toUpperCase()}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
    expectProblem(await a.call('GET', `/workspaces/${workspaceId}`, { token }), 401, 'UNAUTHENTICATED');
    const { reply, ms } = await pollStatus(() => b.call('GET', `/workspaces/${workspaceId}`, { token }), 401);
    expectProblem(reply, 401, 'UNAUTHENTICATED');
    expect(ms).toBeLessThan(2_000);
  });

  it('refuses on A, within 2 s, a conn token A cached and B revoked', async () => {
    const { id, token } = await createToken(a, 'conn');
    expectProblem(await a.call('GET', `/workspaces/${randomUUID()}`, { token }), 403, 'FORBIDDEN');
    await revokeToken(b, id);
    const { reply, ms } = await pollStatus(() => a.call('GET', `/workspaces/${randomUUID()}`, { token }), 401);
    expectProblem(reply, 401, 'UNAUTHENTICATED');
    expect(ms).toBeLessThan(2_000);
  });
});

describe('deleted workspaces', () => {
  it('refuses its agent tokens at once on this process and within 2 s on the other', async () => {
    const { workspaceId, tokens } = await startedWorkspace(a, ['main', 'side']);
    const [main = '', side = ''] = tokens;
    for (const app of [a, b]) {
      for (const token of [main, side]) {
        expect((await app.call('POST', '/agent/heartbeat', { token })).status).toBe(204);
      }
    }
    expect((await b.call('POST', '/agent/disconnect', { token: side })).status).toBe(204);

    const deleted = await a.call('DELETE', `/workspaces/${workspaceId}`, { token: ENV_ADMIN_TOKEN });
    expect(deleted.status).toBe(204);

    expectProblem(await a.call('POST', '/agent/heartbeat', { token: main }), 401, 'UNAUTHENTICATED');
    expectProblem(await a.call('POST', '/agent/disconnect', { token: side }), 401, 'UNAUTHENTICATED');
    for (const token of [main, side]) {
      const { reply, ms } = await pollStatus(() => b.call('POST', '/agent/heartbeat', { token }), 401);
      expectProblem(reply, 401, 'UNAUTHENTICATED');
      expect(ms).toBeLessThan(2_000);
      expectProblem(await b.call('POST', '/agent/disconnect', { token }), 401, 'UNAUTHENTICATED');
    }
  });

  it('keeps the tokens of agents of a superseded build working (they may still report)', async () => {
    const { workspaceId, tokens } = await startedWorkspace(a);
    const old = tokens[0] ?? '';
    expect((await a.call('POST', '/agent/heartbeat', { token: old })).status).toBe(204);
    const stop = await a.call('POST', `/workspaces/${workspaceId}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } });
    expect(stop.status).toBe(201);
    expect((await a.call('POST', '/agent/heartbeat', { token: old })).status).toBe(204);
    expect((await b.call('POST', '/agent/disconnect', { token: old })).status).toBe(204);
  });
});

// ---------------------------------------------------------------------------------------------
// The token cache against a read in flight
// ---------------------------------------------------------------------------------------------

/** Holds the results of token lookups until released, to open the window of a race. */
function holdingPlugin() {
  let reached: () => void = () => undefined;
  let release: () => void = () => undefined;
  const reachedP = new Promise<void>((resolve) => (reached = resolve));
  const releaseP = new Promise<void>((resolve) => (release = resolve));
  let armed = true;
  const plugin: KyselyPlugin = {
    transformQuery: (args) => args.node,
    transformResult: async (args): Promise<QueryResult<UnknownRow>> => {
      if (armed) {
        armed = false;
        reached();
        await releaseP;
      }
      return args.result;
    },
  };
  return { plugin, reached: reachedP, release };
}

describe('token cache and a lookup in flight during a revocation', () => {
  // A lookup that read the row before the revocation committed must not put the token back
  // into the cache after the NOTIFY was applied: the revocation would then wait for the TTL.
  async function raceCase(setup: () => Promise<{ token: string; kill: () => Promise<void>; matches: (e: GateEvent) => boolean }>) {
    const { token, kill, matches } = await setup();
    const hold = holdingPlugin();
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        extraLogs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    const logger = createLogger('info', sink);
    const store = new TokenStore({ db: a.handle.db.withPlugin(hold.plugin) });
    const events = startEvents(database.url, store, a.gate, logger);
    try {
      await new Promise<void>((resolve) => events.listener.once('connected', resolve));
      const notified = new Promise<void>((resolve) => {
        events.listener.on('event', (event) => {
          if (matches(event)) resolve();
        });
      });
      const inFlight = store.resolve(token);
      await hold.reached; // the row was read while the token was still valid
      await kill();
      await notified; // this store has applied the NOTIFY
      hold.release();
      expect(await inFlight).not.toBeNull(); // the call that started first may pass
      expect(await store.resolve(token)).toBeNull(); // but nothing after the NOTIFY
    } finally {
      hold.release();
      await events.listener.close();
    }
  }

  it('does not cache a revoked API token read just before the revocation', async () => {
    await raceCase(async () => {
      const { id, token } = await createToken(a, 'conn');
      return {
        token,
        kill: () => revokeToken(a, id),
        matches: (e) => e.kind === 'token_revoked' && e.tokenId === id,
      };
    });
  });

  it('does not cache an agent token read just before its workspace was deleted', async () => {
    await raceCase(async () => {
      const { workspaceId, tokens } = await startedWorkspace(a);
      return {
        token: tokens[0] ?? '',
        kill: async () => {
          expect((await a.call('DELETE', `/workspaces/${workspaceId}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
        },
        matches: (e) => e.kind === 'workspace_deleted' && e.workspaceId === workspaceId,
      };
    });
  });
});

describe('unknown tokens', () => {
  /** A plugin that counts the queries run through it. */
  function countingPlugin() {
    const counter = { queries: 0 };
    const plugin: KyselyPlugin = {
      transformQuery: (args) => {
        counter.queries += 1;
        return args.node;
      },
      transformResult: async (args) => args.result,
    };
    return { plugin, counter };
  }

  it('answers a repeated unknown token without reading the database again, in a bounded set', async () => {
    const { plugin, counter } = countingPlugin();
    const store = new TokenStore({ db: a.handle.db.withPlugin(plugin), maxUnknownEntries: 10 });
    const unknown = mintToken('conn');
    for (let i = 0; i < 50; i++) expect(await store.resolve(unknown)).toBeNull();
    expect(counter.queries).toBe(1);
    // The set is bounded: ten other unknown tokens push the first one out.
    for (let i = 0; i < 10; i++) expect(await store.resolve(mintToken('conn'))).toBeNull();
    counter.queries = 0;
    expect(await store.resolve(unknown)).toBeNull();
    expect(counter.queries).toBe(1);
  });

  it('forgets unknown tokens after a short time', async () => {
    const { plugin, counter } = countingPlugin();
    const store = new TokenStore({ db: a.handle.db.withPlugin(plugin), unknownTtlMs: 100 });
    const unknown = mintToken('conn');
    expect(await store.resolve(unknown)).toBeNull();
    expect(await store.resolve(unknown)).toBeNull();
    expect(counter.queries).toBe(1);
    // Past the 100 ms the unknown token is remembered: time passing is what is tested.
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await store.resolve(unknown)).toBeNull();
    expect(counter.queries).toBe(2);
  });

  it('publishes token_created wherever a token is created (the route and the CLI path)', async () => {
    const seen: GateEvent[] = [];
    const onEvent = (event: GateEvent) => seen.push(event);
    b.events.listener.on('event', onEvent);
    try {
      const viaRoute = await createToken(a, 'conn');
      const viaRepo = await createApiToken(a.handle.db, { name: 'cli', scope: 'conn' });
      const started = performance.now();
      const ids = () => seen.filter((e) => e.kind === 'token_created').map((e) => (e as { tokenId: string }).tokenId);
      while (!(ids().includes(viaRoute.id) && ids().includes(viaRepo.id)) && performance.now() - started < 2_000) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(ids()).toEqual(expect.arrayContaining([viaRoute.id, viaRepo.id]));
    } finally {
      b.events.listener.off('event', onEvent);
    }
  });

  it('accepts on B at once a token B had just refused as unknown, once A created it', async () => {
    const token = mintToken('admin');
    secrets.add(token);
    const workspaceId = await createWorkspace(a);
    expectProblem(await b.call('GET', `/workspaces/${workspaceId}`, { token }), 401, 'UNAUTHENTICATED');
    expectProblem(await b.call('GET', `/workspaces/${workspaceId}`, { token }), 401, 'UNAUTHENTICATED');
    // A token created with exactly this value: as a creation does, in one transaction with its notice.
    await a.handle.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('api_tokens')
        .values({ name: 'known later', scope: 'admin', owner_id: null, token_hash: hashToken(token) })
        .returning('id')
        .executeTakeFirstOrThrow();
      await publishEvent(trx, { kind: 'token_created', tokenId: row.id });
    });
    const { reply, ms } = await pollStatus(() => b.call('GET', `/workspaces/${workspaceId}`, { token }), 200);
    expect(reply.status).toBe(200);
    expect(ms).toBeLessThan(2_000);
  });
});

// ---------------------------------------------------------------------------------------------
// POST /tokens and DELETE /tokens/:id input
// ---------------------------------------------------------------------------------------------

describe('token routes input', () => {
  async function countNamed(name: string): Promise<number> {
    const row = await a.handle.db
      .selectFrom('api_tokens')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('name', '=', name)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  it('keeps an ownerId typed in upper case as the canonical id: the token sees the workspace, whichever case each was given in', async () => {
    const owner = randomUUID();
    const workspaceId = randomUUID();
    const put = await a.call('PUT', `/workspaces/${workspaceId.toUpperCase()}`, { token: ENV_ADMIN_TOKEN, body: { ownerId: owner.toUpperCase(), name: 'case' } });
    expect(put.status).toBe(201);
    expect(put.body).toMatchObject({ id: workspaceId, ownerId: owner });
    const { token } = await createToken(a, 'conn', owner.toUpperCase());
    const row = await a.handle.db.selectFrom('api_tokens').select('owner_id').where('token_hash', '=', hashToken(token)).executeTakeFirstOrThrow();
    expect(row.owner_id).toBe(owner);
    expect((await a.call('GET', `/workspaces/${workspaceId}/agent`, { token })).body).toMatchObject({ code: 'WORKSPACE_HAS_NO_AGENT' });
  });

  it('refuses ownerId with scope admin and creates nothing', async () => {
    const name = `owned admin ${randomUUID()}`;
    const reply = await a.call('POST', '/tokens', {
      token: ENV_ADMIN_TOKEN,
      body: { name, scope: 'admin', ownerId: randomUUID() },
    });
    expectProblem(reply, 400, 'INVALID_REQUEST');
    expect(reply.body.detail).toMatch(/ownerId/);
    expect(await countNamed(name)).toBe(0);
  });

  it.each([
    ['an unknown field', { name: 'x', scope: 'conn', extra: 1 }],
    ['an unknown field (owner spelled differently)', { name: 'x', scope: 'conn', owner_id: randomUUID() }],
    ['an unknown scope', { name: 'x', scope: 'agent' }],
    ['no scope', { name: 'x' }],
    ['no name', { scope: 'conn' }],
    ['an empty name', { name: '', scope: 'conn' }],
    ['a malformed ownerId', { name: 'x', scope: 'conn', ownerId: 'not-a-uuid' }],
    ['a non-object body', ['conn']],
  ])('refuses a body with %s (400 INVALID_REQUEST)', async (_label, body) => {
    expectProblem(await a.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body }), 400, 'INVALID_REQUEST');
  });

  it('answers 404 NOT_FOUND for DELETE of an unknown token id, 400 for a malformed one', async () => {
    expectProblem(await a.call('DELETE', `/tokens/${randomUUID()}`, { token: ENV_ADMIN_TOKEN }), 404, 'NOT_FOUND');
    expectProblem(await a.call('DELETE', '/tokens/not-a-uuid', { token: ENV_ADMIN_TOKEN }), 400, 'INVALID_REQUEST');
  });

  it('mints a different token every time, scoped as asked', async () => {
    const owner = randomUUID();
    const one = await createToken(a, 'conn', owner);
    const two = await createToken(a, 'conn', owner);
    expect(one.token).not.toBe(two.token);
    expect(one.id).not.toBe(two.id);
    const rows = await a.handle.db
      .selectFrom('api_tokens')
      .select(['id', 'scope', 'owner_id', 'revoked_at'])
      .where('id', 'in', [one.id, two.id])
      .execute();
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row).toMatchObject({ scope: 'conn', owner_id: owner, revoked_at: null });
  });
});

// ---------------------------------------------------------------------------------------------
// Secrets: never logged, never stored in clear. Runs last: it checks everything sent above.
// ---------------------------------------------------------------------------------------------

describe('secrets', () => {
  let verbose: TestApp;
  beforeAll(async () => {
    verbose = await startTestApp({ database, env: { LOG_LEVEL: 'trace' } });
  });
  afterAll(async () => {
    await verbose?.close();
  });

  it('keeps Authorization headers out of the logs at the most verbose level', async () => {
    const admin = await createToken(verbose, 'admin');
    const { tokens } = await startedWorkspace(verbose);
    const unknown = `unknown-${randomBytes(24).toString('base64url')}`;
    secrets.add(unknown);
    const workspaceId = await createWorkspace(verbose);
    expect((await verbose.call('GET', `/workspaces/${workspaceId}`, { token: admin.token })).status).toBe(200);
    expect((await verbose.call('POST', '/agent/heartbeat', { token: tokens[0] ?? '' })).status).toBe(204);
    expectProblem(await verbose.call('GET', `/workspaces/${workspaceId}`, { token: unknown }), 401, 'UNAUTHENTICATED');
    expectProblem(await verbose.call('GET', '/nope', { token: admin.token }), 404, 'NOT_FOUND');
    expectProblem(
      await verbose.call('POST', '/tokens', { token: admin.token, body: { name: 'x', scope: 'conn', token: admin.token } }),
      400,
      'INVALID_REQUEST',
    );
    // The requests were logged (so the check below looks at real lines), their credentials not.
    expect(verbose.logs.some((line) => line.includes(workspaceId))).toBe(true);
    expect(verbose.logs.some((line) => line.includes('"code":"UNAUTHENTICATED"'))).toBe(true);
    for (const secret of [admin.token, tokens[0] ?? '', unknown, ENV_ADMIN_TOKEN]) {
      expect(secret.length).toBeGreaterThan(15);
      const leaks = verbose.logs.filter((line) => line.includes(secret));
      expect(leaks).toEqual([]);
    }
  });

  it('never logs any token used in this file', () => {
    const lines = [...a.logs, ...b.logs, ...verbose.logs, ...extraLogs];
    expect(lines.length).toBeGreaterThan(100);
    expect(secrets.size).toBeGreaterThan(20);
    for (const secret of secrets) {
      const leaks = lines.filter((line) => line.includes(secret));
      expect({ secret: secret.slice(0, 12), leaks }).toEqual({ secret: secret.slice(0, 12), leaks: [] });
    }
  });

  it('stores only hashes: no token appears in clear in any table', async () => {
    const { rows } = await sql<{ dump: string }>`
      select (select coalesce(json_agg(t), '[]') from api_tokens t)::text
          || (select coalesce(json_agg(x), '[]') from workspace_agents x)::text as dump`.execute(a.handle.db);
    const dump = rows[0]?.dump ?? '';
    expect(dump.length).toBeGreaterThan(100);
    for (const secret of secrets) expect(dump.includes(secret)).toBe(false);
    // And the stored hash is the token's SHA-256 (what the gate signs agent requests with).
    const { token } = await createToken(a, 'conn');
    const hash = createHash('sha256').update(token, 'utf8').digest();
    const found = await a.handle.db.selectFrom('api_tokens').select('id').where('token_hash', '=', hash).execute();
    expect(found).toHaveLength(1);
  });
});
