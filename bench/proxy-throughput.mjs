// Proxied tool calls per second and p99 beside the same agent called directly, at C concurrent
// callers (a local measurement, not a test). The gate and the agent run as their own processes;
// the load comes from this one.
//
//   npm run build && node bench/proxy-throughput.mjs      (BENCH_DATABASE_URL overrides the server)
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import autocannon from 'autocannon';
import pg from 'pg';

const root = new URL('..', import.meta.url);
const CLI = new URL('dist/src/cli.js', root).pathname;
const serverUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ADMIN = 'bench-admin-token-0123456789abcdef';

const AGENT = `
const http = require('node:http');
const body = JSON.stringify({ exitCode: 0, stdout: 'ok\\n', stderr: '' });
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body));
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));`;

function start(args, env, pattern) {
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
      const m = out.match(pattern);
      if (m) resolve({ child, match: m });
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
}

const dbName = `agentgate_bench_${Date.now().toString(36)}`;
const admin = new pg.Client({ connectionString: serverUrl });
await admin.connect();
await admin.query(`create database ${dbName}`);
const dbUrl = new URL(serverUrl);
dbUrl.pathname = `/${dbName}`;

const agent = await start(['-e', AGENT], {}, /listening (\d+)/);
const agentUrl = `http://127.0.0.1:${agent.match[1]}`;
const gate = await start([CLI, 'serve'], { DATABASE_URL: dbUrl.toString(), PORT: '0', AGENTGATE_ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'warn' }, /listening on (http:\/\/\S+)/);
const base = gate.match[1];

const call = async (method, path, body, token = ADMIN) => {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json().catch(() => undefined) };
};
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
gate.child.kill('SIGTERM');
agent.child.kill('SIGTERM');
await new Promise((r) => gate.child.on('exit', r));
await admin.query(`drop database ${dbName} with (force)`);
await admin.end();
