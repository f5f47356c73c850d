// The metrics of contract §8 beyond the minimum: dials in flight, notifications by kind, LISTEN
// reconnects, degraded answers, token lookups by source, protective refusals. Their labels stay
// bounded: no workspace, agent or token id is ever a label value.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { agentFixtures } from '../support/agents.js';
import { eventually } from '../support/eventually.js';
import { AgentRows, conn, createWorkspace } from '../support/gate-fixtures.js';

const { agent } = agentFixtures();
let t: TestApp;
beforeAll(async () => {
  t = await startTestApp({ env: { AGENTGATE_RATE_LIMIT_PER_MIN: '3' } });
});
afterAll(async () => {
  await t?.close();
});

const scrape = async () => (await t.call('GET', '/metrics')).text;
const sample = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

it('counts token lookups by source, notifications by kind, dials in flight and refusals', async () => {
  const created = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'm', scope: 'admin' } });
  expect(created.status).toBe(201);
  const token = created.body.token as string;
  const unknown = `agadm_${'x'.repeat(43)}`;
  const before = await scrape();
  const at = (text: string, source: string) => sample(text, `agentgate_token_lookups_total{source="${source}"}`) ?? 0;
  const path = `/workspaces/${randomUUID()}`;
  expect((await t.call('GET', path, { token })).status).toBe(404); // database
  expect((await t.call('GET', path, { token })).status).toBe(404); // cache
  expect((await t.call('GET', path, { token: unknown })).status).toBe(401); // database
  expect((await t.call('GET', path, { token: unknown })).status).toBe(401); // unknown cache
  const after = await scrape();
  expect(at(after, 'database') - at(before, 'database')).toBe(2);
  expect(at(after, 'cache') - at(before, 'cache')).toBe(1);
  expect(at(after, 'unknown_cache') - at(before, 'unknown_cache')).toBe(1);
  expect(at(after, 'env')).toBe(at(before, 'env')); // no call above used the environment's token

  // A build is published to every replica, this one included.
  const a = await agent();
  const ws = await createWorkspace(t, [{ name: 'main', address: a.address }]);
  await eventually(async () => (sample(await scrape(), 'agentgate_notifications_total{kind="build_created"}') ?? 0) >= 1, 5_000, 'the notification counted');

  // One dial, then none in flight.
  await AgentRows.heartbeatOnce(t.database.url, ws.agents[0]!.id);
  expect((await conn(t, ws.id)).status).toBe(200);
  const text = await scrape();
  expect(sample(text, 'agentgate_dials_in_flight')).toBe(0);
  expect(sample(text, 'agentgate_degraded_answers_total')).toBe(0);
  expect(sample(text, 'agentgate_listen_reconnects_total')).toBe(0);

  // The per-minute budget of 3 chat calls for this token: the next ones are refused.
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) statuses.push((await conn(t, randomUUID(), token)).status);
  expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
  expect(sample(await scrape(), 'agentgate_refusals_total{code="RATE_LIMITED"}')).toBe(statuses.filter((s) => s === 429).length);
});

it('keeps every label bounded: no UUID and no token is a label value', async () => {
  const text = await scrape();
  const values = [...text.matchAll(/\{([^}]*)\}/g)].flatMap((m) => [...m[1]!.matchAll(/="([^"]*)"/g)].map((v) => v[1]!));
  expect(values.length).toBeGreaterThan(10);
  for (const value of values) {
    expect(value, value).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i);
    expect(value, value).not.toMatch(/^ag(adm|con|agt)_/);
  }
});
