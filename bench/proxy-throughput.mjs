// Proxied tool calls per second and p99 beside the same agent called directly, at C concurrent
// callers (a local measurement, not a test). The gate and the agent run as their own processes;
// the load comes from this one.
//
//   npm run build && node bench/proxy-throughput.mjs      (BENCH_DATABASE_URL overrides the server)
import { randomUUID } from 'node:crypto';
import autocannon from 'autocannon';
import { ADMIN, createBenchDatabase, gateClient, startGate, startProcess } from './support.mjs';

const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

const AGENT = `
const http = require('node:http');
const body = JSON.stringify({ exitCode: 0, stdout: 'ok\\n', stderr: '' });
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body));
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));`;

const database = await createBenchDatabase();
const agent = await startProcess(['-e', AGENT], {}, /listening (\d+)/);
const agentUrl = `http://127.0.0.1:${agent.match[1]}`;
const gate = await startGate(database.url);
const base = gate.base;
const call = gateClient(base);
const ws = randomUUID();
await call('PUT', `/workspaces/${ws}`, { ownerId: randomUUID(), name: 'bench' });
const build = await call('POST', `/workspaces/${ws}/builds`, { transition: 'start', agents: [{ name: 'main', address: agentUrl }] });
await call('POST', '/agent/heartbeat', undefined, build.body.agents[0].token);
// Keep the agent connected for the whole run.
const beat = setInterval(() => void call('POST', '/agent/heartbeat', undefined, build.body.agents[0].token), 5_000);
if ((await call('POST', `/workspaces/${ws}/conn`)).status !== 200) throw new Error('gate warm-up failed');

const payload = JSON.stringify({ command: 'true', args: [] });
async function load(label, url, headers) {
  await autocannon({ url, method: 'POST', headers, body: payload, connections: CONCURRENCY, duration: 2 }); // warm-up
  const r = await autocannon({ url, method: 'POST', headers, body: payload, connections: CONCURRENCY, duration: SECONDS });
  const non2xx = r.non2xx + r.errors + r.timeouts;
  console.log(`${label.padEnd(24)} ${String(Math.round(r.requests.average)).padStart(7)} req/s   p50 ${String(r.latency.p50).padStart(4)} ms   p99 ${String(r.latency.p99).padStart(4)} ms   failures ${non2xx}`);
  return r;
}

console.log(`${CONCURRENCY} concurrent callers, ${SECONDS} s each, Node ${process.version}`);
const direct = await load('agent directly', `${agentUrl}/exec`, { 'content-type': 'application/json' });
const proxied = await load('through agentgate', `${base}/workspaces/${ws}/conn/exec`, { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` });
console.log(`proxied/direct throughput ${(proxied.requests.average / direct.requests.average).toFixed(2)}x, p99 ${proxied.latency.p99} vs ${direct.latency.p99} ms`);

clearInterval(beat);
await gate.stop();
agent.child.kill('SIGTERM');
await database.drop();
