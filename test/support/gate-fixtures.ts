// Workspaces, builds and agent rows for gate tests. Timestamps are set relative to the
// database's now() with SQL, so tests never wait for heartbeats to age.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { expect } from 'vitest';
import { ENV_ADMIN_TOKEN, type TestApp } from './app.js';

export interface RegisteredAgent {
  id: string;
  name: string;
  token: string;
}

export interface Workspace {
  id: string;
  ownerId: string;
  agents: RegisteredAgent[];
}

export interface AgentSpec {
  name?: string;
  address: string;
  connectionTimeoutSeconds?: number;
  displayOrder?: number;
}

/** Anything that can call the API: a test app, or a client of a gate running as a process. */
export type Caller = Pick<TestApp, 'call'>;

export async function createWorkspace(t: Caller, agents: AgentSpec[], ownerId = randomUUID()): Promise<Workspace> {
  const id = randomUUID();
  const put = await t.call('PUT', `/workspaces/${id}`, { token: ENV_ADMIN_TOKEN, body: { ownerId, name: 'ws' } });
  expect(put.status, put.text).toBe(201);
  const ws: Workspace = { id, ownerId, agents: [] };
  if (agents.length > 0) ws.agents = await startBuild(t, id, agents);
  return ws;
}

export async function startBuild(t: Caller, workspaceId: string, agents: AgentSpec[]): Promise<RegisteredAgent[]> {
  const r = await t.call('POST', `/workspaces/${workspaceId}/builds`, {
    token: ENV_ADMIN_TOKEN,
    body: { transition: 'start', agents: agents.map((a, i) => ({ name: a.name ?? `agent${i}`, ...a })) },
  });
  expect(r.status, r.text).toBe(201);
  return r.body.agents as RegisteredAgent[];
}

/** Direct row edits, as a control plane or the passage of time would make them. */
export class AgentRows {
  constructor(private readonly client: pg.Client) {}

  static async open(url: string): Promise<AgentRows & { close(): Promise<void> }> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const rows = new AgentRows(client);
    return Object.assign(rows, { close: () => client.end() });
  }

  /** One heartbeat now, through a connection of its own: a workspace's agent counts as connected. */
  static async heartbeatOnce(url: string, agentId: string): Promise<void> {
    const rows = await AgentRows.open(url);
    try {
      await rows.heartbeat(agentId);
    } finally {
      await rows.close();
    }
  }

  /** Heartbeat `agoMs` before the database's now() (first connect at the same time if unset). */
  async heartbeat(agentId: string, agoMs = 0): Promise<void> {
    await this.client.query(
      `update workspace_agents
          set first_connected_at = coalesce(first_connected_at, now() - make_interval(secs => $2::float8 / 1000)),
              last_connected_at = now() - make_interval(secs => $2::float8 / 1000)
        where id = $1`,
      [agentId, agoMs],
    );
  }

  async goodbye(agentId: string, agoMs = 0): Promise<void> {
    await this.client.query(
      `update workspace_agents set disconnected_at = now() - make_interval(secs => $2::float8 / 1000) where id = $1`,
      [agentId, agoMs],
    );
  }

  /** Sets the three timestamps to exact values relative to now() (null leaves them null). */
  async set(agentId: string, t: { createdAgoMs?: number; firstAgoMs?: number | null; lastAgoMs?: number | null; discAgoMs?: number | null }): Promise<void> {
    const at = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : ms);
    await this.client.query(
      `update workspace_agents
          set created_at = coalesce(now() - make_interval(secs => $2::float8 / 1000), created_at),
              first_connected_at = now() - make_interval(secs => $3::float8 / 1000),
              last_connected_at = now() - make_interval(secs => $4::float8 / 1000),
              disconnected_at = now() - make_interval(secs => $5::float8 / 1000)
        where id = $1`,
      [agentId, t.createdAgoMs ?? null, at(t.firstAgoMs), at(t.lastAgoMs), at(t.discAgoMs)],
    );
  }

  /** Makes goodbye and last connect exactly equal. */
  async equalGoodbye(agentId: string): Promise<void> {
    await this.client.query(
      `update workspace_agents set first_connected_at = now(), last_connected_at = now(), disconnected_at = now() where id = $1`,
      [agentId],
    );
  }
}

export const conn = (t: TestApp, workspaceId: string, token = ENV_ADMIN_TOKEN, query = '') =>
  t.call('POST', `/workspaces/${workspaceId}/conn${query}`, { token });

export const agentStatus = (t: TestApp, workspaceId: string, token = ENV_ADMIN_TOKEN, query = '') =>
  t.call('GET', `/workspaces/${workspaceId}/agent${query}`, { token });
