// Signature v2 end to end (contract §4.1, 4.2): real gates on one database, the reference agent on
// a real socket, learning the gate keys from GET /agent/keys. A captured request cannot be
// replayed, a request for one agent is refused by another, the stored token hash signs
// nothing, every running replica's key is accepted and a stopped one's stops working.
import { createHmac } from 'node:crypto';
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../../src/agent/run-agent.js';
import { SIGNATURE_HEADER } from '../../src/auth/gate-signature.js';
import { GateSigningKey } from '../../src/auth/gate-signing-key.js';
import { createLogger } from '../../src/logger.js';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { closedPortAddress } from '../support/agents.js';
import { eventually } from '../support/eventually.js';
import { createWorkspace, type Workspace } from '../support/gate-fixtures.js';

let t: TestApp;
let root: string;
const closers: Array<() => Promise<unknown>> = [];

interface Started {
  ws: Workspace;
  agent: RunningAgent;
  agentId: string;
}

/** A workspace whose agent is the reference agent, talking to the gate at `gateUrl`. */
async function startReferenceAgent(gateUrl = t.url): Promise<Started> {
  const address = await closedPortAddress();
  const ws = await createWorkspace(t, [{ name: 'main', address }]);
  const agent = await startAgent({
    gate: gateUrl,
    token: ws.agents[0]!.token,
    host: '127.0.0.1',
    port: Number(new URL(address).port),
    root,
    heartbeatMs: 60_000,
    logger: createLogger('silent'),
  });
  closers.push(() => agent.close(false));
  await eventually(() => agent.heartbeats.sent > 0 && agent.keys.agentId !== undefined, 5_000, 'the agent to heartbeat');
  return { ws, agent, agentId: ws.agents[0]!.id };
}

const EXEC = { command: process.execPath, args: ['-e', 'process.stdout.write("ran")'] };

/** Calls the agent straight, with the signature header given (as a captured request would). */
async function direct(a: Started, auth: string, body: unknown = EXEC): Promise<{ status: number; detail?: string }> {
  const res = await fetch(`${a.agent.url}/exec`, {
    method: 'POST',
    headers: { [SIGNATURE_HEADER]: auth, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const parsed = (await res.json()) as { detail?: string };
  return { status: res.status, detail: parsed.detail };
}

/** Runs EXEC on the workspace's agent through a gate's proxy route. */
async function throughGate(gate: TestApp, ws: Workspace) {
  return gate.call('POST', `/workspaces/${ws.id}/conn/exec`, { token: ENV_ADMIN_TOKEN, body: EXEC });
}

beforeAll(async () => {
  t = await startTestApp();
  root = await realpath(await mkdtemp(path.join(os.tmpdir(), 'agentgate-sig-v2-')));
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await t?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('GET /agent/keys', () => {
  it("answers the agent's own id and every unexpired key, the raw public key in base64url", async () => {
    const ws = await createWorkspace(t, [{ address: await closedPortAddress() }]);
    const expired = GateSigningKey.generate();
    await t.handle.db
      .insertInto('gate_signing_keys')
      .values({ kid: expired.kid, public_key: expired.publicKeyRaw, expires_at: new Date(Date.now() - 1_000) })
      .execute();
    const r = await t.call('GET', '/agent/keys', { token: ws.agents[0]!.token });
    expect(r.status, r.text).toBe(200);
    expect(Object.keys(r.body).sort()).toEqual(['agentId', 'keys']);
    expect(r.body.agentId).toBe(ws.agents[0]!.id);
    const kids = (r.body.keys as Array<{ kid: string }>).map((k) => k.kid);
    expect(kids).toContain(t.app.signingKey.kid);
    expect(kids).not.toContain(expired.kid);
    const mine = (r.body.keys as Array<{ kid: string; publicKey: string; expiresAt: string }>).find((k) => k.kid === t.app.signingKey.kid)!;
    expect(Object.keys(mine).sort()).toEqual(['expiresAt', 'kid', 'publicKey']);
    expect(mine.publicKey).toBe(t.app.signingKey.publicKeyRaw.toString('base64url'));
    expect(mine.publicKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Kept at least 5 minutes ahead while the process runs.
    expect(Date.parse(mine.expiresAt) - Date.now()).toBeGreaterThan(5 * 60_000);
  });

  it('needs an agent token', async () => {
    expect((await t.call('GET', '/agent/keys')).status).toBe(401);
    expect((await t.call('GET', '/agent/keys', { token: ENV_ADMIN_TOKEN })).body.code).toBe('FORBIDDEN');
  });

  it('is in the OpenAPI document', async () => {
    const doc = await t.call('GET', '/openapi.json');
    expect(doc.body.paths['/agent/keys'].get.responses['200']).toBeDefined();
  });
});

describe('the reference agent verifies signature v2', () => {
  let a: Started;
  let b: Started;
  beforeAll(async () => {
    a = await startReferenceAgent();
    b = await startReferenceAgent();
  });

  it('serves requests the gate signs, through the proxy', async () => {
    const r = await throughGate(t, a.ws);
    expect(r.status, r.text).toBe(200);
    expect(r.body.stdout).toBe('ran');
  });

  it('refuses a captured request replayed, even with another body', async () => {
    const captured = t.app.signingKey.sign(a.agentId, 'POST', '/exec');
    expect((await direct(a, captured)).status).toBe(200);
    const again = await direct(a, captured);
    expect(again.status).toBe(401);
    expect(again.detail).toMatch(/replayed/);
    const otherBody = await direct(a, captured, { command: process.execPath, args: ['-e', 'process.exit(3)'] });
    expect(otherBody.status).toBe(401);
  });

  it('refuses at agent B a request signed for agent A', async () => {
    const forA = t.app.signingKey.sign(a.agentId, 'POST', '/exec');
    const atB = await direct(b, forA);
    expect(atB.status).toBe(401);
    expect(atB.detail).toMatch(/mismatch/);
    // The same header is still good where it was meant to go.
    expect((await direct(a, forA)).status).toBe(200);
  });

  it('refuses a v1 HMAC made from the token hash the database stores', async () => {
    const row = await t.handle.db.selectFrom('workspace_agents').select('token_hash').where('id', '=', a.agentId).executeTakeFirstOrThrow();
    const seconds = Math.floor(Date.now() / 1000);
    const mac = createHmac('sha256', row.token_hash).update(`${seconds}\nPOST\n/exec`).digest('hex');
    const r = await direct(a, `v1.${seconds}.${mac}`);
    expect(r.status).toBe(401);
    expect(r.detail).toMatch(/malformed/);
    // Nor is a v2 header signed with a key that is not published.
    const made = GateSigningKey.generate().sign(a.agentId, 'POST', '/exec');
    expect((await direct(a, made)).status).toBe(401);
  });

  it('refetches the keys on an unknown kid at most once per second', async () => {
    const before = a.agent.keys.fetches;
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 20 }, () => direct(a, GateSigningKey.generate().sign(a.agentId, 'POST', '/exec'))));
    for (const r of answers) expect(r.status).toBe(401);
    for (let i = 0; i < 4; i += 1) expect((await direct(a, GateSigningKey.generate().sign(a.agentId, 'POST', '/exec'))).status).toBe(401);
    const seconds = (performance.now() - started) / 1000;
    // One fetch may start at once, then at most one a second.
    expect(a.agent.keys.fetches - before).toBeGreaterThanOrEqual(1);
    expect(a.agent.keys.fetches - before).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
  });
});

describe('replicas', () => {
  it("accepts a second replica's key, learnt when a request first names it", async () => {
    const a = await startReferenceAgent();
    const second = await startTestApp({ database: t.database });
    closers.push(() => second.close());
    expect(a.agent.keys.known(second.app.signingKey.kid)).toBeUndefined();
    const viaSecond = await throughGate(second, a.ws);
    expect(viaSecond.status, viaSecond.text).toBe(200);
    const viaFirst = await throughGate(t, a.ws);
    expect(viaFirst.status, viaFirst.text).toBe(200);
  });

  it("stops accepting a stopped replica's key once it expires; a running one's is kept fresh", async () => {
    const a = await startReferenceAgent();
    const lifetimeMs = 1_500;
    const crashed = await startTestApp({ database: t.database, keyLifetimeMs: lifetimeMs, keyRefreshMs: 300 });
    const stopped = await startTestApp({ database: t.database, keyLifetimeMs: lifetimeMs, keyRefreshMs: 300 });
    closers.push(() => crashed.close());
    for (const gate of [crashed, stopped]) expect((await throughGate(gate, a.ws)).status).toBe(200);
    // Past one lifetime the refreshes have kept both keys valid.
    await new Promise((r) => setTimeout(r, lifetimeMs + 300));
    for (const gate of [crashed, stopped]) expect((await throughGate(gate, a.ws)).status).toBe(200);

    // One stops refreshing without a word (a crash), the other stops cleanly and deletes its row.
    const crashedKey = crashed.app.signingKey;
    const stoppedKey = stopped.app.signingKey;
    await crashed.keys.halt();
    await stopped.close();
    const row = await t.handle.db.selectFrom('gate_signing_keys').select('kid').where('kid', '=', stoppedKey.kid).executeTakeFirst();
    expect(row).toBeUndefined();
    // Past the keys' lifetime: their expiry is what is tested.
    await new Promise((r) => setTimeout(r, lifetimeMs + 200));
    for (const key of [crashedKey, stoppedKey]) {
      const r = await direct(a, key.sign(a.agentId, 'POST', '/exec'));
      expect(r.status, key.kid).toBe(401);
      expect(r.detail).toMatch(/unknown or expired key/);
    }
    // The first gate's key is unaffected.
    expect((await throughGate(t, a.ws)).status).toBe(200);
  });
});
