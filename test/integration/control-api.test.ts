import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';

let t: TestApp;
const admin = ENV_ADMIN_TOKEN;

beforeAll(async () => {
  t = await startTestApp({ env: { AGENTGATE_BODY_LIMIT_BYTES: '4096' } });
});
afterAll(async () => {
  await t.close();
});

function expectProblem(reply: { status: number; headers: Headers; body: Record<string, unknown> }, status: number, code: string) {
  expect(reply.status).toBe(status);
  expect(reply.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(reply.body).toMatchObject({ status, code, title: expect.any(String), detail: expect.any(String) });
  expect(typeof reply.body.retryable).toBe('boolean');
  expect(JSON.stringify(reply.body)).not.toMatch(/stack|select |insert |127\.0\.0\.1|at .*\.ts:/i);
}

describe('workspaces', () => {
  it('creates (201), updates (200), reads and deletes a workspace', async () => {
    const id = randomUUID();
    const owner = randomUUID();
    const created = await t.call('PUT', `/workspaces/${id}`, { token: admin, body: { ownerId: owner, name: 'dev' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id, ownerId: owner, name: 'dev', latestBuild: null, agents: [] });
    expect(Date.parse(created.body.createdAt)).not.toBeNaN();

    const owner2 = randomUUID();
    const updated = await t.call('PUT', `/workspaces/${id}`, { token: admin, body: { ownerId: owner2, name: 'dev2' } });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ id, ownerId: owner2, name: 'dev2' });

    const got = await t.call('GET', `/workspaces/${id}`, { token: admin });
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id, ownerId: owner2, name: 'dev2', latestBuild: null, agents: [] });

    const deleted = await t.call('DELETE', `/workspaces/${id}`, { token: admin });
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');

    expectProblem(await t.call('GET', `/workspaces/${id}`, { token: admin }), 404, 'WORKSPACE_NOT_FOUND');
    expectProblem(await t.call('DELETE', `/workspaces/${id}`, { token: admin }), 404, 'WORKSPACE_NOT_FOUND');
    // Ids are not reused: a PUT on a deleted workspace is refused too.
    expectProblem(
      await t.call('PUT', `/workspaces/${id}`, { token: admin, body: { ownerId: owner, name: 'again' } }),
      404,
      'WORKSPACE_NOT_FOUND',
    );
    expectProblem(
      await t.call('POST', `/workspaces/${id}/builds`, { token: admin, body: { transition: 'start' } }),
      404,
      'WORKSPACE_NOT_FOUND',
    );
  });
});

async function workspace(): Promise<string> {
  const id = randomUUID();
  const r = await t.call('PUT', `/workspaces/${id}`, { token: admin, body: { ownerId: randomUUID(), name: 'w' } });
  expect(r.status).toBe(201);
  return id;
}

describe('builds', () => {
  it('numbers builds 1, 2, 3 and returns agent tokens once', async () => {
    const id = await workspace();
    const first = await t.call('POST', `/workspaces/${id}/builds`, {
      token: admin,
      body: {
        transition: 'start',
        agents: [
          { name: 'main', address: 'http://10.0.0.1:4000', displayOrder: 1 },
          { name: 'Aux', address: 'https://agent.example.com/base', connectionTimeoutSeconds: 0, displayOrder: 1 },
          { name: 'zeta', address: 'http://[::1]:9', displayOrder: 0 },
        ],
      },
    });
    expect(first.status).toBe(201);
    expect(first.body.build).toMatchObject({ buildNumber: 1, transition: 'start' });
    expect(first.body.agents).toHaveLength(3);
    for (const a of first.body.agents) expect(a.token).toMatch(/^agagt_[A-Za-z0-9_-]{43}$/);

    const got = await t.call('GET', `/workspaces/${id}`, { token: admin });
    expect(got.body.latestBuild).toMatchObject({ buildNumber: 1, transition: 'start' });
    // Selection order: display order, then name in byte order ('A' < 'm').
    expect(got.body.agents.map((a: { name: string }) => a.name)).toEqual(['zeta', 'Aux', 'main']);
    const aux = got.body.agents[1];
    expect(aux).toMatchObject({
      address: 'https://agent.example.com/base',
      connectionTimeoutSeconds: 0,
      displayOrder: 1,
      status: 'connecting',
      firstConnectedAt: null,
      lastConnectedAt: null,
      disconnectedAt: null,
    });
    expect(got.body.agents[2]).toMatchObject({ connectionTimeoutSeconds: 120, status: 'connecting' });
    expect(JSON.stringify(got.body)).not.toContain('token');

    const second = await t.call('POST', `/workspaces/${id}/builds`, { token: admin, body: { transition: 'stop' } });
    expect(second.status).toBe(201);
    expect(second.body).toMatchObject({ build: { buildNumber: 2, transition: 'stop' }, agents: [] });
    const stopped = await t.call('GET', `/workspaces/${id}`, { token: admin });
    expect(stopped.body.latestBuild).toMatchObject({ buildNumber: 2, transition: 'stop' });
    expect(stopped.body.agents).toEqual([]);

    const third = await t.call('POST', `/workspaces/${id}/builds`, {
      token: admin,
      body: { transition: 'start', agents: [{ name: 'main', address: 'http://10.0.0.2:4000' }] },
    });
    expect(third.body.build.buildNumber).toBe(3);
  });

  it('never gives two concurrent builds the same number', async () => {
    const id = await workspace();
    const replies = await Promise.all(
      Array.from({ length: 12 }, () =>
        t.call('POST', `/workspaces/${id}/builds`, {
          token: admin,
          body: { transition: 'start', agents: [{ name: 'main', address: 'http://127.0.0.1:1' }] },
        }),
      ),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(12).fill(201));
    const numbers = replies.map((r) => r.body.build.buildNumber as number).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
  });

  it('refuses agents on stop and delete builds', async () => {
    const id = await workspace();
    for (const transition of ['stop', 'delete']) {
      expectProblem(
        await t.call('POST', `/workspaces/${id}/builds`, {
          token: admin,
          body: { transition, agents: [{ name: 'main', address: 'http://127.0.0.1:1' }] },
        }),
        400,
        'INVALID_REQUEST',
      );
    }
  });

  it.each([
    ['relative', '/agent'],
    ['no scheme', 'agent.local:4000'],
    ['ftp', 'ftp://agent.local/'],
    ['file', 'file:///etc/passwd'],
    ['credentials', 'http://user:pass@agent.local/'],
    ['user only', 'http://user@agent.local/'],
    ['query', 'http://agent.local/?x=1'],
    ['fragment', 'http://agent.local/#frag'],
    ['javascript', 'javascript:alert(1)'],
    ['empty', ''],
  ])('refuses a bad agent address (%s)', async (_label, address) => {
    const id = await workspace();
    const reply = await t.call('POST', `/workspaces/${id}/builds`, {
      token: admin,
      body: { transition: 'start', agents: [{ name: 'main', address }] },
    });
    expectProblem(reply, 400, 'INVALID_REQUEST');
    const after = await t.call('GET', `/workspaces/${id}`, { token: admin });
    expect(after.body.latestBuild).toBeNull();
  });

  it('refuses repeated agent names, unknown fields and bad transitions', async () => {
    const id = await workspace();
    const post = (body: unknown) => t.call('POST', `/workspaces/${id}/builds`, { token: admin, body });
    expectProblem(
      await post({
        transition: 'start',
        agents: [
          { name: 'a', address: 'http://x.test' },
          { name: 'a', address: 'http://y.test' },
        ],
      }),
      400,
      'INVALID_REQUEST',
    );
    expectProblem(await post({ transition: 'start', extra: 1 }), 400, 'INVALID_REQUEST');
    expectProblem(await post({ transition: 'reboot' }), 400, 'INVALID_REQUEST');
    expectProblem(await post({ transition: 'start', agents: [{ name: 'has space', address: 'http://x.test' }] }), 400, 'INVALID_REQUEST');
  });
});

describe('bad input', () => {
  it('gives problem+json for bad UUIDs, bad JSON, wrong types and oversize bodies', async () => {
    expectProblem(await t.call('GET', '/workspaces/not-a-uuid', { token: admin }), 400, 'INVALID_REQUEST');
    expectProblem(
      await t.call('PUT', `/workspaces/${randomUUID()}`, {
        token: admin,
        rawBody: '{"ownerId": ',
        headers: { 'content-type': 'application/json' },
      }),
      400,
      'INVALID_REQUEST',
    );
    expectProblem(
      await t.call('PUT', `/workspaces/${randomUUID()}`, { token: admin, body: { ownerId: 'nope', name: 'x' } }),
      400,
      'INVALID_REQUEST',
    );
    expectProblem(
      await t.call('PUT', `/workspaces/${randomUUID()}`, { token: admin, body: { ownerId: randomUUID() } }),
      400,
      'INVALID_REQUEST',
    );
    expectProblem(
      await t.call('PUT', `/workspaces/${randomUUID()}`, {
        token: admin,
        rawBody: 'ownerId=1',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      }),
      400,
      'INVALID_REQUEST',
    );
    const big = await t.call('PUT', `/workspaces/${randomUUID()}`, {
      token: admin,
      body: { ownerId: randomUUID(), name: 'x'.repeat(8000) },
    });
    expectProblem(big, 413, 'PAYLOAD_TOO_LARGE');
  });

  it('answers unknown routes and methods with NOT_FOUND whatever the token', async () => {
    expectProblem(await t.call('GET', '/nope'), 404, 'NOT_FOUND');
    expectProblem(await t.call('GET', '/nope', { token: 'garbage' }), 404, 'NOT_FOUND');
    expectProblem(await t.call('PATCH', `/workspaces/${randomUUID()}`, { token: admin }), 404, 'NOT_FOUND');
    expectProblem(await t.call('POST', '/healthz'), 404, 'NOT_FOUND');
  });
});
