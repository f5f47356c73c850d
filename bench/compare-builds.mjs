// Two builds of the gate side by side (a local measurement, not a test): the gate's CPU per call
// and its throughput on the everyday paths, measured interleaved (A, B, A, B, ...) so that the
// machine's drift falls on both alike. CPU per call is read from the gate process's own CPU time
// (/proc/<pid>/stat), which a busy neighbour moves far less than req/s.
//
//   npm run build && node bench/compare-builds.mjs <old dist/src/cli.js> [<new dist/src/cli.js>]
//   BENCH_SECONDS=5 BENCH_RUNS=3 ...      (seconds per run, runs per build and path)
//
// With taskset and two cores, both gates and the agent run on core 0 and the load on core 1;
// only one gate is loaded at a time. Paths: a proxied GET of a small tool output, a cached
// POST .../conn on one workspace, and the sentinel of an agent that said goodbye; 50 callers each,
// with a conn token.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { ADMIN, CLI, connectedWorkspace, createBenchDatabase, gateClient, waitReady } from './support.mjs';
import { freePort, pinSelf, pinningAvailable } from './lib/processes.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const [oldCli, newCli = CLI] = process.argv.slice(2);
if (!oldCli) throw new Error('usage: node bench/compare-builds.mjs <old cli.js> [<new cli.js>]');
const pin = pinningAvailable();
const onServerCore = (args) => (pin ? ['taskset', ['-c', '0', process.execPath, ...args]] : [process.execPath, args]);
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User + system CPU seconds of a process so far. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

const children = [];
const stopAll = () => {
  for (const child of children) child.kill('SIGTERM');
};
process.on('exit', stopAll);

const agentPort = await freePort();
const [agentCmd, agentArgs] = onServerCore([new URL('./servers/agent.mjs', import.meta.url).pathname, String(agentPort)]);
children.push(spawn(agentCmd, agentArgs, { stdio: 'ignore' }));
const agentAddress = `http://127.0.0.1:${agentPort}`;

async function startBuild(label, cli) {
  const database = await createBenchDatabase();
  const port = await freePort();
  const [cmd, args] = onServerCore([cli, 'serve']);
  const child = spawn(cmd, args, {
    env: { PATH: process.env.PATH, DATABASE_URL: database.url, PORT: String(port), AGENTGATE_ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'info', AGENTGATE_RATE_LIMIT_PER_MIN: '0' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base);
  const call = gateClient(base);
  const live = await connectedWorkspace(base, agentAddress);
  const gone = await connectedWorkspace(base, agentAddress);
  gone.stop();
  await fetch(`${base}/agent/disconnect`, { method: 'POST', headers: { authorization: `Bearer ${gone.agentToken}` } });
  const token = (await call('POST', '/tokens', { name: 'bench', scope: 'conn' })).body.token;
  // The gate's pid: taskset execs node in place, so the child's pid is the gate's.
  return { label, base, token, pid: child.pid, live: live.id, gone: gone.id, database };
}

const PATHS = {
  proxied: (b) => ({ method: 'GET', path: `/workspaces/${b.live}/conn/tool/small`, expect: 200 }),
  'cached conn': (b) => ({ method: 'POST', path: `/workspaces/${b.live}/conn`, expect: 200 }),
  sentinel: (b) => ({ method: 'POST', path: `/workspaces/${b.gone}/conn`, expect: 409 }),
};

async function run(build, name) {
  const { method, path, expect } = PATHS[name](build);
  const before = cpuSeconds(build.pid);
  const r = await autocannon({ url: build.base + path, method, headers: { authorization: `Bearer ${build.token}` }, connections: 50, duration: SECONDS });
  const cpu = cpuSeconds(build.pid) - before;
  const wrong = r.requests.total - (expect === 200 ? (r['2xx'] ?? 0) : (r['4xx'] ?? 0));
  return { rps: r.requests.average, cpuUs: (cpu / r.requests.total) * 1e6, p50: r.latency.p50, p99: r.latency.p99, wrong };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const builds = [await startBuild('old', oldCli), await startBuild('new', newCli)];
if (pin) pinSelf(1);
console.log(`old: ${oldCli}\nnew: ${newCli}\n${SECONDS} s per run, ${RUNS} interleaved runs per build and path, 50 callers\n`);
const rows = [];
for (const name of Object.keys(PATHS)) {
  for (const b of builds) await run(b, name); // warm-up
  const results = new Map(builds.map((b) => [b.label, []]));
  for (let i = 0; i < RUNS; i += 1) for (const b of builds) results.get(b.label).push(await run(b, name));
  for (const b of builds) {
    const rs = results.get(b.label);
    rows.push({
      path: name,
      build: b.label,
      rps: Math.round(median(rs.map((x) => x.rps))),
      cpuUs: Math.round(median(rs.map((x) => x.cpuUs))),
      p50: median(rs.map((x) => x.p50)),
      p99: median(rs.map((x) => x.p99)),
      cpuRuns: rs.map((x) => Math.round(x.cpuUs)).join('/'),
      wrong: rs.reduce((n, x) => n + x.wrong, 0),
    });
  }
}
console.log('| path | build | req/s | gate CPU µs/call | runs (µs) | p50 ms | p99 ms | unexpected answers |');
console.log('|---|---|---:|---:|---|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.path} | ${r.build} | ${r.rps} | ${r.cpuUs} | ${r.cpuRuns} | ${r.p50} | ${r.p99} | ${r.wrong} |`);
stopAll();
await new Promise((r) => setTimeout(r, 500));
for (const b of builds) await b.database.drop?.();
process.exit(0);
