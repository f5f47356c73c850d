// What a hostile agent costs the gate (a local measurement, not a test): the agent at a
// workspace's address answers an MCP tools/call by trickling one event line that never ends,
// 4 KiB every millisecond up to 9.5 MiB, first for one call, then for six in one batched POST.
// Meanwhile /healthz is timed every 50 ms, and the gate's CPU time (from /proc) and heap (from
// its /metrics) are read; the caller leaves after BENCH_SECONDS and the gate is watched for
// 5 s more.
//
//   npm run build && node bench/hostile-agent.mjs          (BENCH_SECONDS per scenario, default 15)
//   GATE_CLI=/path/to/other/dist/src/cli.js node bench/hostile-agent.mjs     (another build)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { ADMIN, CLI, connectedWorkspace, createBenchDatabase, waitReady } from './support.mjs';
import { freePort } from './lib/processes.mjs';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const cli = process.env.GATE_CLI ?? CLI;
const CLOCK_TICK = 100; // /proc's stat is in clock ticks; 100 a second on Linux

// The hostile agent: /health, a session, then one event line that never ends.
const agent = http.createServer((req, res) => {
  if (req.url === '/health') return res.writeHead(200).end('ok');
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const m = JSON.parse(body);
    if (m.method === 'initialize') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'h', version: '1' } } }));
    }
    if (m.id === undefined) return res.writeHead(202).end();
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('event: message\ndata: ');
    const piece = 'x'.repeat(4096);
    let sent = 0;
    const timer = setInterval(() => {
      if (sent >= 9.5 * 1024 * 1024) return clearInterval(timer);
      sent += piece.length;
      res.write(piece);
    }, 1);
    res.once('close', () => clearInterval(timer));
  });
});
const agentPort = await freePort();
await new Promise((r) => agent.listen(agentPort, '127.0.0.1', r));

const database = await createBenchDatabase();
const gatePort = await freePort();
const gate = spawn(process.execPath, [cli, 'serve'], {
  env: { PATH: process.env.PATH, DATABASE_URL: database.url, PORT: String(gatePort), AGENTGATE_ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'warn' },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const base = `http://127.0.0.1:${gatePort}`;
await waitReady(base);
const workspace = await connectedWorkspace(base, `http://127.0.0.1:${agentPort}`);
const ws = workspace.id;

const cpuSeconds = () => {
  const fields = readFileSync(`/proc/${gate.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICK;
};
const heapMB = async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Math.round(Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1] ?? 0) / 1e6);
};

/** Times /healthz every 50 ms until stopped; resolves with the latencies. */
function sampleHealth() {
  const latencies = [];
  let on = true;
  const done = (async () => {
    while (on) {
      const t0 = performance.now();
      await fetch(`${base}/healthz`).then((r) => r.text());
      latencies.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 50));
    }
    return latencies;
  })();
  return { stop: () => ((on = false), done) };
}

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))];

async function scenario(label, calls) {
  const heapBefore = await heapMB();
  let heapPeak = heapBefore;
  const cpu0 = cpuSeconds();
  const health = sampleHealth();
  const peak = setInterval(() => void heapMB().then((h) => (heapPeak = Math.max(heapPeak, h))), 500);
  const messages = Array.from({ length: calls }, (_, i) => ({ jsonrpc: '2.0', id: i + 1, method: 'tools/call', params: { name: 'x', arguments: {} } }));
  const controller = new AbortController();
  const sent = fetch(`${base}/workspaces/${ws}/mcp`, {
    method: 'POST',
    signal: controller.signal,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify(calls === 1 ? messages[0] : messages),
  }).then(
    (r) => r.text(),
    () => 'left',
  );
  const t0 = performance.now();
  const answer = await Promise.race([sent, new Promise((r) => setTimeout(() => r('still running'), SECONDS * 1000))]);
  const tookS = (performance.now() - t0) / 1000;
  controller.abort();
  const cpuDuring = cpuSeconds() - cpu0;
  // After the caller left: is the gate still working?
  const cpu1 = cpuSeconds();
  await new Promise((r) => setTimeout(r, 5_000));
  const cpuAfter = cpuSeconds() - cpu1;
  clearInterval(peak);
  const latencies = await health.stop();
  const code = /"code":"([A-Z_]+)"/.exec(typeof answer === 'string' ? answer : '')?.[1] ?? (answer === 'still running' ? 'still running' : 'other');
  console.log(
    `${label}: answered ${code} after ${tookS.toFixed(1)} s; gate CPU ${cpuDuring.toFixed(1)} s (${(cpuDuring / tookS).toFixed(2)} cores), ` +
      `${cpuAfter.toFixed(2)} s in the 5 s after the caller left; heap ${heapBefore} -> peak ${heapPeak} MB; ` +
      `/healthz p50 ${pct(latencies, 0.5).toFixed(1)} ms, p99 ${pct(latencies, 0.99).toFixed(1)} ms, max ${Math.max(...latencies).toFixed(1)} ms (${latencies.length} samples)`,
  );
}

await scenario('one tools/call, a 9.5 MiB line trickled', 1);
await scenario('six such calls in one batched POST', 6);
workspace.stop();
gate.kill('SIGKILL');
agent.close();
agent.closeAllConnections();
await new Promise((r) => setTimeout(r, 300));
await database.drop();
