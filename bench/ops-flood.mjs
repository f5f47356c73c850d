// The gate's latency while its operations routes are flooded (a local measurement, not a test):
// cached `POST /workspaces/:id/conn` calls (one database read each) from 10 callers, first alone,
// then while 256 keep-alive sockets loop /readyz, /metrics and /openapi.json as fast as the gate
// answers them. Operations routes are unauthenticated, so anyone who reaches the port can do
// this; they must not take the gate's database capacity.
//
//   npm run build && node bench/ops-flood.mjs           (BENCH_SECONDS per phase, default 10)
//   GATE_CLI=/path/to/other/dist/src/cli.js node bench/ops-flood.mjs     (another build)
//
// With taskset and two cores, the gate, PostgreSQL's backends for it and the agent share core 0
// and the load core 1, as `npm run bench` pins them.
import { spawn } from 'node:child_process';
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { ADMIN, CLI, connectedWorkspace, createBenchDatabase, gateClient, waitReady } from './support.mjs';
import { freePort, pinSelf, pinningAvailable } from './lib/processes.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const FLOOD_SOCKETS = 256;
const cli = process.env.GATE_CLI ?? CLI;
const pin = pinningAvailable();
const onServerCore = (args) => (pin ? ['taskset', ['-c', '0', process.execPath, ...args]] : [process.execPath, args]);

const database = await createBenchDatabase();
const agentPort = await freePort();
const [agentCmd, agentArgs] = onServerCore([new URL('./servers/agent.mjs', import.meta.url).pathname, String(agentPort)]);
const agent = spawn(agentCmd, agentArgs, { stdio: 'ignore' });
const gatePort = await freePort();
const [gateCmd, gateArgs] = onServerCore([cli, 'serve']);
const gate = spawn(gateCmd, gateArgs, {
  env: { PATH: process.env.PATH, DATABASE_URL: database.url, PORT: String(gatePort), AGENTGATE_ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'info', AGENTGATE_RATE_LIMIT_PER_MIN: '0' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
if (pin) pinSelf(1);
const base = `http://127.0.0.1:${gatePort}`;
await waitReady(base);
const workspace = await connectedWorkspace(base, `http://127.0.0.1:${agentPort}`);
const ws = workspace.id;
const call = gateClient(base);
const conn = await call('POST', '/tokens', { name: 'bench', scope: 'conn' });
const token = conn.body.token;
if ((await call('POST', `/workspaces/${ws}/conn`, undefined, token)).status !== 200) throw new Error('the workspace is not reachable');

async function measure(label) {
  const r = await autocannon({ url: `${base}/workspaces/${ws}/conn`, method: 'POST', headers: { authorization: `Bearer ${token}` }, connections: 10, duration: SECONDS });
  const bad = r.requests.total - (r['2xx'] ?? 0);
  console.log(`${label}: ${Math.round(r.requests.average)} req/s, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, max ${r.latency.max} ms, non-2xx ${bad}`);
  return r;
}

await measure('warm-up');
await measure('conn alone');

// The flood: each socket loops its route, one request at a time, for as long as it runs.
const pool = new Pool(base, { connections: FLOOD_SOCKETS, pipelining: 1 });
const routes = ['/readyz', '/metrics', '/openapi.json'];
let flooding = true;
const served = { total: 0, byStatus: new Map() };
const loops = Array.from({ length: FLOOD_SOCKETS }, async (_, i) => {
  while (flooding) {
    try {
      const res = await pool.request({ method: 'GET', path: routes[i % routes.length] });
      await res.body.dump();
      served.total += 1;
      served.byStatus.set(res.statusCode, (served.byStatus.get(res.statusCode) ?? 0) + 1);
    } catch {
      served.byStatus.set('error', (served.byStatus.get('error') ?? 0) + 1);
    }
  }
});
await new Promise((r) => setTimeout(r, 1_000));
const before = served.total;
const started = performance.now();
await measure(`conn with ${FLOOD_SOCKETS} sockets looping ${routes.join(', ')}`);
const opsRate = Math.round(((served.total - before) * 1000) / (performance.now() - started));
flooding = false;
await Promise.all(loops);
console.log(`operations routes served meanwhile: ${opsRate} req/s; answers by status: ${JSON.stringify(Object.fromEntries(served.byStatus))}`);
await pool.close();
workspace.stop();
gate.kill('SIGKILL');
agent.kill('SIGKILL');
await new Promise((r) => setTimeout(r, 300));
await database.drop();
