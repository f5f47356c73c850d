// Process faults: SIGTERM under load (each request completes or gets SHUTTING_DOWN; none is
// cut) and SIGKILL of one of two replicas (the other serves every workspace). The gate runs
// as its real command, `agentgate serve`, against the test database.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { ENV_ADMIN_TOKEN, parseBody, type Reply } from '../support/app.js';
import { startAgent, type FakeAgent } from '../support/agents.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { AgentRows, createWorkspace, type Caller, type Workspace } from '../support/gate-fixtures.js';
import { runCli, type CliProcess } from '../support/process.js';
import { outcome, timed, WorstCases, type Timed } from './support.js';

const GRACE_MS = 3_000;
const DIAL_TIMEOUT_MS = 1_000;
const DB_TIMEOUT_MS = 1_000;
const SLACK_MS = 1_000;

let database: TestDatabase;
let rows: AgentRows & { close(): Promise<void> };
let agent: FakeAgent;
const closers: Array<() => Promise<unknown>> = [];
const table = new WorstCases();

beforeAll(async () => {
  database = await createTestDatabase();
  rows = await AgentRows.open(database.url);
  agent = await startAgent();
  // A tool call that takes a while: in flight when the signal comes.
  agent.handle = (req, res) => {
    if (!req.url?.endsWith('/slow')) return false;
    setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('done'), 300);
    return true;
  };
});

afterAll(async () => {
  table.print('Process faults: worst-case waits');
  for (const close of closers.reverse()) await close();
  await agent?.close();
  await rows?.close();
  await database?.drop();
});

async function gate(): Promise<{ cli: CliProcess; url: string; caller: Caller }> {
  const cli = runCli(['serve'], {
    DATABASE_URL: database.url,
    PORT: '0',
    AGENTGATE_ADMIN_TOKEN: ENV_ADMIN_TOKEN,
    AGENTGATE_SHUTDOWN_GRACE_MS: String(GRACE_MS),
    AGENTGATE_DIAL_TIMEOUT_MS: String(DIAL_TIMEOUT_MS),
    AGENTGATE_DB_TIMEOUT_MS: String(DB_TIMEOUT_MS),
    LOG_LEVEL: 'info',
  });
  closers.push(async () => {
    if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
    await cli.exited;
  });
  const [, url = ''] = await cli.waitFor(/listening on (http:\/\/\S+)/);
  const caller: Caller = {
    call: async (method, path, options = {}) => {
      const res = await fetch(url + path, {
        method,
        headers: {
          authorization: `Bearer ${options.token ?? ENV_ADMIN_TOKEN}`,
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text, body: parseBody(text) };
    },
  };
  return { cli, url, caller };
}

interface Sent {
  id: string;
  startedAt: number;
  settled: Timed<Reply> | undefined;
  error: string | undefined;
}

/** One call with its own request id, over a client of the caller's; never throws. */
async function send(client: Agent, url: string, method: string, path: string): Promise<Sent> {
  const sent: Sent = { id: randomUUID(), startedAt: performance.now(), settled: undefined, error: undefined };
  try {
    sent.settled = await timed(async (): Promise<Reply> => {
      const res = await request(url + path, {
        method: method as 'GET' | 'POST',
        dispatcher: client,
        headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, 'x-request-id': sent.id },
      });
      const text = await res.body.text(); // a cut response rejects here
      const body = parseBody(text);
      const headers = new Headers();
      for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
      return { status: res.statusCode, headers, text, body };
    });
  } catch (error) {
    sent.error = (error as { code?: string }).code ?? (error as Error).message;
  }
  return sent;
}

// why: pino lines are JSON with arbitrary fields; the test reads a few of them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const logLines = (cli: CliProcess): Array<Record<string, any>> =>
  cli
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('process faults', () => {
  it('SIGTERM under load: every request completes or gets SHUTTING_DOWN, none is cut, and the process exits 0 within the grace', async () => {
    const { cli, url, caller } = await gate();
    const ws: Workspace = await createWorkspace(caller, [{ address: agent.address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    const sent: Sent[] = [];
    let stop = false;
    const callers = Array.from({ length: 10 }, async (_, i) => {
      const client = new Agent();
      try {
        while (!stop) {
          const s = await send(client, url, i % 2 ? 'GET' : 'POST', i % 2 ? `/workspaces/${ws.id}/conn/slow` : `/workspaces/${ws.id}/conn`);
          sent.push(s);
          // Refused: the listener is closed, as a load balancer would see it. This caller is done.
          if (s.error === 'ECONNREFUSED') break;
        }
      } finally {
        await client.destroy();
      }
    });
    // Traffic runs for a while before the signal, so that calls are in flight when it lands.
    await new Promise((r) => setTimeout(r, 800));
    const signalledAt = performance.now();
    cli.child.kill('SIGTERM');
    const exit = await cli.exited;
    const exitedAfterMs = performance.now() - signalledAt;
    stop = true;
    await Promise.all(callers);

    expect(exit).toEqual({ code: 0, signal: null });
    expect(exitedAfterMs).toBeLessThan(GRACE_MS + SLACK_MS);
    const answered = sent.filter((s) => s.settled !== undefined);
    for (const s of answered) {
      expect(['ok', 'agent 200', '503 SHUTTING_DOWN'], outcome(s.settled!.r)).toContain(outcome(s.settled!.r));
    }
    // Requests in flight at the signal finished during the drain.
    expect(answered.some((s) => s.startedAt < signalledAt && s.startedAt + s.settled!.ms > signalledAt && s.settled!.r.status === 200)).toBe(true);
    // A request the process received was answered: whatever failed on the client never reached it.
    const logs = logLines(cli);
    const received = new Set(logs.filter((l) => l.msg === 'incoming request').map((l) => String(l.reqId)));
    const completed = new Set(logs.filter((l) => l.msg === 'request completed').map((l) => String(l.reqId)));
    for (const id of received) expect(completed.has(id), `request ${id} received but never completed`).toBe(true);
    for (const s of sent.filter((x) => x.error !== undefined)) {
      expect(received.has(s.id), `request ${s.id} was cut (${String(s.error)}) after the process received it`).toBe(false);
    }
    table.record('SIGTERM under load', answered.map((s) => s.settled!), GRACE_MS + SLACK_MS);
  });

  it('SIGKILL of one of two replicas: the other serves every workspace', async () => {
    const [a, b] = [await gate(), await gate()];
    const workspaces: Workspace[] = [];
    const agents: FakeAgent[] = [];
    for (let i = 0; i < 5; i += 1) {
      const fake = await startAgent();
      agents.push(fake);
      closers.push(() => fake.close());
      const ws = await createWorkspace(a.caller, [{ address: fake.address }]);
      await rows.heartbeat(ws.agents[0]!.id);
      workspaces.push(ws);
    }
    // Both replicas hold connections to every agent.
    for (const ws of workspaces) {
      expect((await a.caller.call('POST', `/workspaces/${ws.id}/conn`)).status).toBe(200);
      expect((await b.caller.call('POST', `/workspaces/${ws.id}/conn`)).status).toBe(200);
    }
    a.cli.child.kill('SIGKILL');
    expect(await a.cli.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const calls = await Promise.all(
      workspaces.flatMap((ws) => [
        timed(() => b.caller.call('POST', `/workspaces/${ws.id}/conn`)),
        timed(() => b.caller.call('GET', `/workspaces/${ws.id}/conn/health`)),
      ]),
    );
    for (const { r } of calls) expect(['ok', 'agent 200'], outcome(r)).toContain(outcome(r));
    table.record('SIGKILL of the other replica', calls, DB_TIMEOUT_MS + SLACK_MS);
    // New state still reaches the survivor: a workspace made on it is served too.
    const fresh = await createWorkspace(b.caller, [{ address: agents[0]!.address }]);
    await rows.heartbeat(fresh.agents[0]!.id);
    expect((await b.caller.call('POST', `/workspaces/${fresh.id}/conn`)).status).toBe(200);
  });
});
