// A proxied WebSocket ends with the authority it rests on: a revoked token, a deleted, stopped or
// rebuilt workspace, an agent's goodbye, on this replica and on another one through NOTIFY, and
// during its handshake too; a forged notification closes nothing; and it ends after an idle
// timeout or a maximum lifetime. Real agent (`ws`), real sockets, real PostgreSQL. (The rule
// itself, and the other kinds of work it ends alike, are test/unit/in-flight.test.ts and
// test/integration/authority-in-flight.test.ts.)
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { AgentRows, createWorkspace, startBuild, type Workspace } from '../support/gate-fixtures.js';
import { eventually } from '../support/eventually.js';
import { startWsAgent, type WsAgent } from '../support/ws-agent.js';

let t: TestApp;
/** A second replica on the same database. */
let other: TestApp;
/** Short idle timeout and lifetime. */
let short: TestApp;
let agent: WsAgent;
let rows: AgentRows & { close(): Promise<void> };

beforeAll(async () => {
  t = await startTestApp();
  other = await startTestApp({ database: t.database });
  short = await startTestApp({ database: t.database, env: { AGENTGATE_WS_IDLE_TIMEOUT_MS: '300', AGENTGATE_WS_MAX_LIFETIME_MS: '900' } });
  agent = await startWsAgent();
  rows = await AgentRows.open(t.database.url);
});
afterAll(async () => {
  await rows?.close();
  await agent?.close();
  await short?.close();
  await other?.close();
  await t?.close();
});

async function workspace(): Promise<Workspace> {
  const ws = await createWorkspace(t, [{ address: agent.address }]);
  await rows.heartbeat(ws.agents[0]!.id);
  return ws;
}

/** Opens a proxied WebSocket and waits until it carries a message both ways. */
async function tunnel(app: TestApp, ws: Workspace, token = ENV_ADMIN_TOKEN): Promise<{ socket: WebSocket; closed: Promise<number> }> {
  const socket = new WebSocket(`${app.url.replace(/^http/, 'ws')}/workspaces/${ws.id}/conn/term`, { headers: { authorization: `Bearer ${token}` } });
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${String(res.statusCode)}`)));
  });
  const echoed = new Promise<void>((resolve) => socket.once('message', () => resolve()));
  socket.send('ping');
  await echoed;
  return { socket, closed };
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms))]);

async function connToken(app: TestApp): Promise<{ id: string; token: string }> {
  const r = await app.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'chat', scope: 'conn' } });
  expect(r.status).toBe(201);
  return r.body as { id: string; token: string };
}

describe('a tunnel ends when its authority ends', () => {
  it.each([
    ['on this replica', () => t],
    ['on another replica (through NOTIFY)', () => other],
  ])('its token is revoked: the tunnel %s closes', async (_where, replica) => {
    const ws = await workspace();
    const chat = await connToken(t);
    const { closed } = await tunnel(replica(), ws, chat.token);
    expect((await t.call('DELETE', `/tokens/${chat.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
    await within(closed, 2_000, 'the tunnel closing');
  });

  it('its workspace is deleted', async () => {
    const ws = await workspace();
    const { closed } = await tunnel(other, ws);
    expect((await t.call('DELETE', `/workspaces/${ws.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
    await within(closed, 2_000, 'the tunnel closing');
  });

  it('its workspace is stopped', async () => {
    const ws = await workspace();
    const { closed } = await tunnel(t, ws);
    const stop = await t.call('POST', `/workspaces/${ws.id}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop', agents: [] } });
    expect(stop.status).toBe(201);
    await within(closed, 2_000, 'the tunnel closing');
  });

  it('its workspace is rebuilt', async () => {
    const ws = await workspace();
    const { closed } = await tunnel(other, ws);
    await startBuild(t, ws.id, [{ address: agent.address }]);
    await within(closed, 2_000, 'the tunnel closing');
  });

  it('its agent says goodbye', async () => {
    const ws = await workspace();
    const { closed } = await tunnel(other, ws);
    const bye = await t.call('POST', '/agent/disconnect', { token: ws.agents[0]!.token });
    expect(bye.status).toBe(204);
    await within(closed, 2_000, 'the tunnel closing');
  });

  it('a revocation missed while notifications were down is caught by the re-check after the resync', async () => {
    const ws = await workspace();
    const chat = await connToken(t);
    const { closed } = await tunnel(t, ws, chat.token);
    // Revoked behind the gate's back: no notification.
    const direct = new pg.Client({ connectionString: t.database.url });
    await direct.connect();
    await direct.query('update api_tokens set revoked_at = now() where id = $1', [chat.id]);
    await direct.end();
    t.events.hub.resync();
    await within(closed, 2_000, 'the tunnel closing after the re-check');
  });

  it('a token revoked during the handshake (an agent slow to answer the upgrade) gets no tunnel: 401, and the upgrade to the agent is given up', async () => {
    const ws = await workspace();
    const chat = await connToken(t);
    const socket = new WebSocket(`${t.url.replace(/^http/, 'ws')}/workspaces/${ws.id}/conn/term?delay=3000`, { headers: { authorization: `Bearer ${chat.token}` } });
    socket.on('error', () => undefined);
    const answered = new Promise<number>((resolve) => {
      socket.once('open', () => resolve(101));
      socket.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    });
    await eventually(() => agent.upgrades.some((u) => u.url.includes('delay=3000')), 2_000, 'the upgrade to reach the agent');
    const waiting = agent.delayed();
    expect((await t.call('DELETE', `/tokens/${chat.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
    expect(await within(answered, 1_000, 'the refusal')).toBe(401);
    await within(waiting, 1_000, "the agent's upgrade socket closing");
  });

  it("a forged notification closes nothing: the rows say the token still holds", async () => {
    const ws = await workspace();
    const chat = await connToken(t);
    const { socket } = await tunnel(other, ws, chat.token);
    const forger = new pg.Client({ connectionString: t.database.url });
    await forger.connect();
    await forger.query('select pg_notify($1, $2)', ['agentgate_events', JSON.stringify({ kind: 'token_revoked', tokenId: chat.id })]);
    await forger.query('select pg_notify($1, $2)', ['agentgate_events', JSON.stringify({ kind: 'workspace_deleted', workspaceId: ws.id })]);
    await forger.end();
    await eventually(async () => /agentgate_notifications_total\{kind="token_revoked"\} [1-9]/.test(await other.metrics.registry.metrics()), 2_000, 'the notification received');
    // Read, found to hold: the tunnel still carries messages.
    await new Promise((r) => setTimeout(r, 200));
    const echoed = new Promise<void>((resolve) => socket.once('message', () => resolve()));
    socket.send('still here');
    await within(echoed, 2_000, 'the tunnel still carrying messages');
    socket.close();
  });

  it.each([
    ['its token is revoked by an id in upper case', async (ws: Workspace, chat: { id: string }) => t.call('DELETE', `/tokens/${chat.id.toUpperCase()}`, { token: ENV_ADMIN_TOKEN })],
    ['its workspace is deleted by an id in upper case', async (ws: Workspace) => t.call('DELETE', `/workspaces/${ws.id.toUpperCase()}`, { token: ENV_ADMIN_TOKEN })],
    ['its workspace is stopped by an id in upper case', async (ws: Workspace) => t.call('POST', `/workspaces/${ws.id.toUpperCase()}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } })],
  ])('a tunnel opened with the workspace id in upper case closes when %s', async (_what, end) => {
    const ws = await workspace();
    const chat = await connToken(t);
    const { closed } = await tunnel(t, { ...ws, id: ws.id.toUpperCase() }, chat.token);
    expect((await end(ws, chat)).status).toBeLessThan(300);
    await within(closed, 2_000, 'the tunnel closing');
  });

  it('others stay open: a tunnel of another workspace and token is untouched', async () => {
    const [ws1, ws2] = [await workspace(), await workspace()];
    const kept = await tunnel(t, ws1);
    const ended = await tunnel(t, ws2);
    expect((await t.call('DELETE', `/workspaces/${ws2.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
    await within(ended.closed, 2_000, 'the tunnel closing');
    const echoed = new Promise<void>((resolve) => kept.socket.once('message', () => resolve()));
    kept.socket.send('still here');
    await within(echoed, 2_000, 'the other tunnel still carrying messages');
    kept.socket.close();
  });
});

describe('idle timeout and maximum lifetime', () => {
  it('a tunnel with no data either way is closed after AGENTGATE_WS_IDLE_TIMEOUT_MS', async () => {
    const ws = await workspace();
    const { closed } = await tunnel(short, ws);
    const quietSince = Date.now();
    const at = await within(closed, 2_000, 'the idle tunnel closing');
    expect(at - quietSince).toBeGreaterThanOrEqual(250);
  });

  it('a busy tunnel is closed after AGENTGATE_WS_MAX_LIFETIME_MS', async () => {
    const ws = await workspace();
    const opened = Date.now();
    const { socket, closed } = await tunnel(short, ws);
    const chatter = setInterval(() => socket.readyState === WebSocket.OPEN && socket.send('busy'), 100);
    try {
      const at = await within(closed, 3_000, 'the old tunnel closing');
      expect(at - opened).toBeGreaterThanOrEqual(800);
    } finally {
      clearInterval(chatter);
    }
  });
});
