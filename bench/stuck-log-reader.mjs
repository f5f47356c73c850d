// The gate's memory while its log reader is stuck (a local measurement, not a test): stdout is a
// pipe that nobody reads, and every call writes a log line. Memory should level off, the lines
// past the log buffer dropped and counted in agentgate_log_lines_dropped_total.
//
//   npm run build && node bench/stuck-log-reader.mjs        (BENCH_SECONDS, default 30)
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { ADMIN, CLI, createBenchDatabase, gateClient } from './support.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 30);

const database = await createBenchDatabase();
const port = 20_000 + Math.floor(Math.random() * 20_000);
// Holds the pipe's read end and never reads it.
const reader = spawn('sleep', [String(SECONDS + 60)], { stdio: ['pipe', 'ignore', 'ignore'] });
const gate = spawn(process.execPath, [CLI, 'serve'], {
  env: { PATH: process.env.PATH, DATABASE_URL: database.url, PORT: String(port), AGENTGATE_ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'info', AGENTGATE_RATE_LIMIT_PER_MIN: '0' },
  stdio: ['ignore', reader.stdin, 'inherit'],
});
const base = `http://127.0.0.1:${port}`;
for (let ready = false; !ready; ) {
  ready = await fetch(`${base}/readyz`).then((r) => r.status === 200, () => false);
  if (!ready) await new Promise((r) => setTimeout(r, 100));
}
const rssMiB = () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gate.pid}/status`, 'utf8'))[1]) / 1024);
const dropped = async () => /^agentgate_log_lines_dropped_total (\d+)/m.exec(await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } })).text())?.[1];

// A workspace with no build: each call is a refusal answered from the gate's read, and logged.
const ws = randomUUID();
await gateClient(base)('PUT', `/workspaces/${ws}`, { ownerId: randomUUID(), name: 'bench' });
console.log(`t=0 s: RSS ${rssMiB()} MiB`);
let t = 0;
const sampler = setInterval(() => console.log(`t=${(t += 5)} s: RSS ${rssMiB()} MiB`), 5_000);
const r = await autocannon({ url: `${base}/workspaces/${ws}/conn`, method: 'POST', headers: { authorization: `Bearer ${ADMIN}` }, connections: 50, duration: SECONDS });
clearInterval(sampler);
console.log(`${r.requests.total} calls (${Math.round(r.requests.average)}/s); RSS ${rssMiB()} MiB; log lines dropped: ${await dropped()}`);
gate.kill('SIGKILL');
reader.kill('SIGKILL');
await database.drop();
