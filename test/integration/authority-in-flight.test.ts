// Work in flight ends when its authority ends, every kind alike and on every replica, within a
// second: a proxied request waiting for its headers, a proxied stream, an MCP call and a
// WebSocket, when their token is revoked, their workspace deleted, stopped, rebuilt or given to
// another owner, or their agent says goodbye. Each ends with the answer a new call would get.
// Ids typed in upper case end it too (they are canonical from the moment they enter). Real
// agents on real sockets, two replicas on one real PostgreSQL.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { agentFixtures } from '../support/agents.js';
import { AgentRows, createWorkspace, startBuild, type Workspace } from '../support/gate-fixtures.js';
import { connectClient, type McpClient } from '../support/mcp.js';
import { startHostileAgent, type HostileAgent } from '../support/hostile-mcp-agent.js';
import { startWsAgent, type WsAgent } from '../support/ws-agent.js';

let t: TestApp;
let other: TestApp;
let ws: WsAgent;
let mcpAgent: HostileAgent;
const fakes = agentFixtures();
const clients: McpClient[] = [];
/** Stops what a test left running (its requests and sockets), before the apps close. */
const leftovers: Array<() => void> = [];

beforeAll(async () => {
  t = await startTestApp();
  other = await startTestApp({ database: t.database });
  ws = await startWsAgent();
  mcpAgent = await startHostileAgent();
});
afterAll(async () => {
  for (const stop of leftovers.splice(0)) stop();
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await mcpAgent?.close();
  await ws?.close();
  await other?.close();
  await t?.close();
});

type Kind = 'waiting for headers' | 'stream' | 'MCP call' | 'WebSocket';

/** A fake HTTP agent: /hold never answers, /stream sends a chunk every 20 ms for ever. */
async function httpAgent(): Promise<string> {
  const agent = await fakes.agent();
  agent.handle = (req, res) => {
    if (req.url?.startsWith('/hold')) return true;
    if (!req.url?.startsWith('/stream')) return false;
    res.writeHead(200, { 'content-type': 'text/plain' });
    const beat = setInterval(() => res.write('tick\n'), 20);
    res.once('close', () => clearInterval(beat));
    return true;
  };
  return agent.address;
}

/** A conn token confined to `ownerId`, with its id. */
async function scopedToken(ownerId: string): Promise<{ id: string; token: string }> {
  const r = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'chat', scope: 'conn', ownerId } });
  expect(r.status, r.text).toBe(201);
  return r.body as { id: string; token: string };
}

/**
 * Starts work of `kind` on `app`, and resolves once it reached the agent. `ended` resolves with
 * what the caller got when the gate ended it: a problem code, 'aborted' (a stream cut off), or
 * 'closed' (a WebSocket).
 */
async function startWork(app: TestApp, kind: Kind, space: Workspace, token: string): Promise<{ ended: Promise<string> }> {
  const base = `${app.url}/workspaces/${space.id.toUpperCase()}`;
  if (kind === 'MCP call') {
    const c = await connectClient(`${base}/mcp`, { token });
    clients.push(c);
    const started = mcpAgent.started();
    const ended = c.client.callTool({ name: 'endless', arguments: { everyMs: 20 } }, undefined, { timeout: 10_000 }).then(
      (result) => String((result._meta?.['agentgate/error'] as { code?: string } | undefined)?.code ?? 'answered'),
      (error: Error) => `rejected: ${error.message}`,
    );
    await until(() => mcpAgent.started() > started);
    return { ended };
  }
  if (kind === 'WebSocket') {
    const socket = new WebSocket(`${base.replace(/^http/, 'ws')}/conn/term`, { headers: { authorization: `Bearer ${token}` } });
    socket.on('error', () => undefined);
    leftovers.push(() => socket.terminate());
    await new Promise<void>((resolve, reject) => {
      socket.once('open', resolve);
      socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade answered ${String(res.statusCode)}`)));
    });
    return { ended: new Promise((resolve) => socket.once('close', () => resolve('closed'))) };
  }
  const path = kind === 'stream' ? '/stream' : '/hold';
  let reachedAgent!: () => void;
  const reached = new Promise<void>((resolve) => (reachedAgent = resolve));
  const ended = new Promise<string>((resolve) => {
    const req = request(`${base}/conn${path}`, { headers: { authorization: `Bearer ${token}` } });
    leftovers.push(() => req.destroy());
    req.once('response', (res) => {
      if (res.headers['content-type']?.startsWith('application/problem+json')) {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.once('end', () => resolve(String((JSON.parse(text) as { code: string }).code)));
        return;
      }
      res.once('data', () => reachedAgent());
      res.on('data', () => undefined);
      res.once('aborted', () => resolve('aborted'));
      res.once('error', () => resolve('aborted'));
      res.once('end', () => resolve('ended cleanly'));
    });
    req.once('error', () => resolve('aborted'));
    req.end();
  });
  if (kind === 'stream') await reached;
  else await new Promise((r) => setTimeout(r, 150)); // the request sits at the agent, headers held
  return { ended };
}

async function until(check: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Ending {
  name: string;
  /** Ends the authority of work on `space` sent with token `tokenId` (through `t`, in upper case where it can). */
  run(space: Workspace, tokenId: string): Promise<void>;
  /** What the caller gets: for work answered by the gate (before headers, MCP). */
  code: string;
}

const ENDINGS: Ending[] = [
  {
    name: 'its token is revoked',
    run: async (_space, tokenId) => void expect((await t.call('DELETE', `/tokens/${tokenId.toUpperCase()}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204),
    code: 'UNAUTHENTICATED',
  },
  {
    name: 'its workspace is given to another owner',
    run: async (space) => {
      const r = await t.call('PUT', `/workspaces/${space.id.toUpperCase()}`, { token: ENV_ADMIN_TOKEN, body: { ownerId: randomUUID().toUpperCase(), name: 'ws' } });
      expect(r.status, r.text).toBe(200);
    },
    code: 'WORKSPACE_NOT_FOUND',
  },
  {
    name: 'its workspace is deleted',
    run: async (space) => void expect((await t.call('DELETE', `/workspaces/${space.id.toUpperCase()}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204),
    code: 'WORKSPACE_NOT_FOUND',
  },
  {
    name: 'its workspace is stopped',
    run: async (space) =>
      void expect((await t.call('POST', `/workspaces/${space.id.toUpperCase()}/builds`, { token: ENV_ADMIN_TOKEN, body: { transition: 'stop' } })).status).toBe(201),
    code: 'AGENT_CONNECTION_LOST',
  },
  {
    name: 'its workspace is rebuilt',
    run: async (space) => void (await startBuild(t, space.id.toUpperCase(), [{ address: 'http://127.0.0.1:9' }])),
    code: 'AGENT_CONNECTION_LOST',
  },
  {
    name: 'its agent says goodbye',
    run: async (space) => void expect((await t.call('POST', '/agent/disconnect', { token: space.agents[0]!.token })).status).toBe(204),
    code: 'AGENT_CONNECTION_LOST',
  },
];

const KINDS: Kind[] = ['waiting for headers', 'stream', 'MCP call', 'WebSocket'];
const cases = KINDS.flatMap((kind) => ENDINGS.flatMap((ending) => (['this replica', 'the other replica'] as const).map((where) => [kind, ending.name, where, ending] as const)));

describe('work in flight ends with its authority', () => {
  it.each(cases)('%s, when %s, on %s: within a second, as a new call would be answered', async (kind, _name, where, ending) => {
    const ownerId = randomUUID();
    const address = kind === 'MCP call' ? mcpAgent.address : kind === 'WebSocket' ? ws.address : await httpAgent();
    const space = await createWorkspace(t, [{ name: 'main', address }], ownerId);
    await AgentRows.heartbeatOnce(t.database.url, space.agents[0]!.id);
    const chat = await scopedToken(ownerId);
    const app = where === 'this replica' ? t : other;
    const work = await startWork(app, kind, space, chat.token);
    const started = performance.now();
    await ending.run(space, chat.id);
    const got = await Promise.race([work.ended, new Promise<string>((r) => setTimeout(() => r('still running after 1 s'), 1_000))]);
    const expected = kind === 'stream' ? 'aborted' : kind === 'WebSocket' ? 'closed' : ending.code;
    expect(got).toBe(expected);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("other work goes on: another token's, another workspace's", async () => {
    const ownerId = randomUUID();
    const space = await createWorkspace(t, [{ name: 'main', address: await httpAgent() }], ownerId);
    const otherSpace = await createWorkspace(t, [{ name: 'main', address: await httpAgent() }], ownerId);
    for (const s of [space, otherSpace]) await AgentRows.heartbeatOnce(t.database.url, s.agents[0]!.id);
    const [revoked, kept] = [await scopedToken(ownerId), await scopedToken(ownerId)];
    const a = await startWork(other, 'stream', space, revoked.token);
    const b = await startWork(other, 'stream', space, kept.token);
    const c = await startWork(other, 'stream', otherSpace, kept.token);
    expect((await t.call('DELETE', `/tokens/${revoked.id}`, { token: ENV_ADMIN_TOKEN })).status).toBe(204);
    expect(await a.ended).toBe('aborted');
    const stillRunning = await Promise.race([Promise.any([b.ended, c.ended]), new Promise<string>((r) => setTimeout(() => r('running'), 500))]);
    expect(stillRunning).toBe('running');
  });
});
