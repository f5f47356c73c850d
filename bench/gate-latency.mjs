// Latency of the gate's two fast paths, measured locally (not a test): a strong-signal sentinel
// (AGENT_DISCONNECTED) and a cached 200, each as p50/p99 over N calls at C concurrent callers,
// plus database round trips per call from agentgate_db_query_seconds.
//
//   npm run build && node bench/gate-latency.mjs            (local server at 127.0.0.1:5432)
//   BENCH_DATABASE_URL=postgres://... node bench/gate-latency.mjs
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import autocannon from 'autocannon';
import { ADMIN, createBenchDatabase, gateClient, startGate } from './support.mjs';

const CALLS = Number(process.env.BENCH_CALLS ?? 2000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);

const database = await createBenchDatabase();
const agent = http.createServer((req, res) => res.writeHead(req.url?.endsWith('/health') ? 200 : 404).end('{}'));
await new Promise((r) => agent.listen(0, '127.0.0.1', r));
let agentConnections = 0;
agent.on('connection', () => (agentConnections += 1));

const gate = await startGate(database.url);
const base = gate.base;
const call = gateClient(base);

async function workspace(address) {
  const id = randomUUID();
  await call('PUT', `/workspaces/${id}`, { ownerId: randomUUID(), name: 'bench' });
  const build = await call('POST', `/workspaces/${id}/builds`, { transition: 'start', agents: [{ name: 'main', address }] });
  return { id, agentId: build.body.agents[0].id, token: build.body.agents[0].token };
}

const healthy = await workspace(`http://127.0.0.1:${agent.address().port}`);
await fetch(`${base}/agent/heartbeat`, { method: 'POST', headers: { authorization: `Bearer ${healthy.token}` } });
const gone = await workspace(`http://127.0.0.1:${agent.address().port}`);
await fetch(`${base}/agent/heartbeat`, { method: 'POST', headers: { authorization: `Bearer ${gone.token}` } });
await fetch(`${base}/agent/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${gone.token}` } });
if ((await call('POST', `/workspaces/${healthy.id}/conn`)).status !== 200) throw new Error('warm-up failed');

async function queryCount() {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('agentgate_db_query_seconds_count'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

async function run(label, path, expected) {
  // Warm-up: JIT, the pool's connections, the prepared statement on each of them.
  await autocannon({ url: base + path, method: 'POST', headers: { authorization: `Bearer ${ADMIN}` }, connections: CONCURRENCY, amount: 2000 });
  const before = await queryCount();
  const connectionsBefore = agentConnections;
  const result = await autocannon({
    url: base + path,
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}` },
    connections: CONCURRENCY,
    amount: CALLS,
  });
  const after = await queryCount();
  const statuses = Object.entries(result.statusCodeStats ?? {}).map(([s, v]) => `${s}:${v.count}`).join(' ');
  console.log(
    `${label.padEnd(28)} p50 ${String(result.latency.p50).padStart(5)} ms  p99 ${String(result.latency.p99).padStart(5)} ms  ` +
      `${Math.round(result.requests.total / result.duration)} req/s  statuses ${statuses} (expected ${expected})  ` +
      `db queries/call ${((after - before) / result.requests.total).toFixed(2)}  new agent connections ${agentConnections - connectionsBefore}`,
  );
}

console.log(`${CALLS} calls at ${CONCURRENCY} concurrent callers, Node ${process.version}`);
await run('strong-signal sentinel', `/workspaces/${gone.id}/conn`, 409);
await run('cached 200', `/workspaces/${healthy.id}/conn`, 200);

await gate.stop();
agent.close();
await database.drop();
