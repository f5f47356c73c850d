// `npm run bench`: agentgate against its baselines, in one run on one machine (contract §10, issue 11).
//
//   npm run bench                                 10 s per run, 3 interleaved runs, 10 000 workspaces
//   npm run bench -- --seconds 3 --runs 1         a quick look
//   node bench/run.mjs --tiny --out <dir>         ~1 s per scenario, 50 workspaces (the test suite)
//
// Options: --seconds N, --runs N, --warmup S, --workspaces N, --connections N, --rate N (the
// open-loop rate), --dial-timeout-ms N, --samples N (dial and abort samples), --mcp-calls N
// (sequential MCP tools/call per run, direct and through the gate), --no-pin,
// --out DIR (default bench/results). BENCH_DATABASE_URL names the PostgreSQL server (default
// postgres://postgres@127.0.0.1:5432/postgres); the bench creates a database there and drops it.
//
// Every server (agentgate, the baselines, the agent) is a process of its own, pinned to core 0
// when taskset and two cores exist; this process (the load generator) is pinned to core 1.
// PostgreSQL is not started here, so it is not pinned. Results: <out>/<date>.md, .json and .svg.
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile, readFile, access } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { Pool } from 'undici';
import { ADMIN, CLI, SERVER_URL, createBenchDatabase } from './support.mjs';
import { Processes, freePort, onPath, pinSelf, pinningAvailable } from './lib/processes.mjs';
import { closedLoop, openLoop } from './lib/load.mjs';
import { median, percentile } from './lib/stats.mjs';
import { evaluate, renderMarkdown, renderSvg } from './lib/report.mjs';

const { values: args } = parseArgs({
  options: {
    tiny: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    runs: { type: 'string' },
    warmup: { type: 'string' },
    workspaces: { type: 'string' },
    connections: { type: 'string' },
    rate: { type: 'string' },
    'dial-timeout-ms': { type: 'string' },
    samples: { type: 'string' },
    'mcp-calls': { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const num = (value, fallback) => (value === undefined ? fallback : Number(value));
const tiny = args.tiny;
const opts = {
  tiny,
  seconds: num(args.seconds, tiny ? 1 : 10),
  runs: num(args.runs, tiny ? 1 : 3),
  warmup: num(args.warmup, tiny ? 0.2 : 3),
  workspaces: num(args.workspaces, tiny ? 50 : 10_000),
  connections: num(args.connections, 50),
  rate: num(args.rate, 1000),
  dialTimeoutMs: num(args['dial-timeout-ms'], 200),
  samples: num(args.samples, tiny ? 20 : 200),
  mcpCalls: num(args['mcp-calls'], tiny ? 20 : 500),
  pin: !args['no-pin'] && !tiny && pinningAvailable(),
};
for (const [key, value] of Object.entries(opts)) {
  if (typeof value === 'number' && !(value > 0)) throw new Error(`--${key} must be a positive number`);
}
const outDir = path.resolve(args.out ?? new URL('results/', import.meta.url).pathname);
const log = (line) => process.stderr.write(`${line}\n`);

const AUTH = { authorization: `Bearer ${ADMIN}` };
const pick = (ids) => ids[Math.floor(Math.random() * ids.length)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** `promise`'s value, or undefined after `ms` (the timer cleared either way). */
async function within(promise, ms) {
  let timer;
  try {
    return await Promise.race([promise, new Promise((r) => (timer = setTimeout(r, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- the machine ---------------------------------------------------------------------------
async function packageVersion(name) {
  try {
    const file = new URL(`../node_modules/${name}/package.json`, import.meta.url);
    return JSON.parse(await readFile(file, 'utf8')).version;
  } catch {
    return 'absent';
  }
}

function nginxVersion() {
  if (!onPath('nginx')) return null;
  // `nginx -v` writes "nginx version: nginx/1.22.1" to stderr.
  const { stdout, stderr } = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  return `${stdout}${stderr}`.trim().replace(/^nginx version: /, '') || 'nginx';
}

async function machine(serverUrl) {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  const { rows } = await client.query('show server_version');
  await client.end();
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a checkout
  }
  const nginx = nginxVersion();
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverageAtStart: os.loadavg().map((v) => Number(v.toFixed(2))),
    node: process.version,
    postgres: rows[0]?.server_version ?? 'unknown',
    agentgate: `${pkg.version} (${commit})`,
    packages: {
      fastify: await packageVersion('fastify'),
      pg: await packageVersion('pg'),
      kysely: await packageVersion('kysely'),
      undici: await packageVersion('undici'),
      '@fastify/reply-from': await packageVersion('@fastify/reply-from'),
      autocannon: await packageVersion('autocannon'),
    },
    nginx: nginx ?? 'not installed',
  };
}

// ---- the database -------------------------------------------------------------------------
async function migrate(url) {
  const { migrateUp } = await import(new URL('../dist/src/db/migrate.js', import.meta.url).href);
  const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 1 }) }) });
  try {
    await migrateUp(db);
  } finally {
    await db.destroy();
  }
}

/**
 * `count` workspaces, each with one start build and one agent named "main" at `address`
 * (followed by "/<workspace id>" when `perWorkspacePath`), either connected (a heartbeat now)
 * or gone (a goodbye after its last heartbeat: the strong AGENT_DISCONNECTED signal).
 */
async function seed(client, { label, count, address, perWorkspacePath = false, state }) {
  const { rows } = await client.query(
    `with w as (
       insert into workspaces (id, owner_id, name)
       select gen_random_uuid(), gen_random_uuid(), $1 || '-' || i from generate_series(1, $2::int) i
       returning id),
     b as (
       insert into workspace_builds (workspace_id, build_number, transition)
       select id, 1, 'start' from w
       returning id, workspace_id),
     a as (
       insert into workspace_agents (build_id, name, address, token_hash, first_connected_at, last_connected_at, disconnected_at)
       select b.id, 'main',
              case when $4::bool then $3 || '/' || b.workspace_id::text else $3 end,
              sha256(convert_to(gen_random_uuid()::text, 'UTF8')),
              now() - interval '1 minute',
              case when $5 = 'gone' then now() - interval '1 minute' else now() end,
              case when $5 = 'gone' then now() - interval '30 seconds' else null end
         from b
       returning id)
     select b.workspace_id as id from b`,
    [label, count, address, perWorkspacePath, state],
  );
  return rows.map((r) => r.id);
}

/** A heartbeat for every connected agent (the inactive timeout is 30 s; runs are longer). */
const refreshAgents = (client) => client.query('update workspace_agents set last_connected_at = now() where disconnected_at is null');

// ---- helpers against the gate ----------------------------------------------------------------
async function metricsOf(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const sum = (prefix) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(prefix))
      .reduce((acc, l) => acc + Number(l.split(' ').pop()), 0);
  return {
    rss: sum('process_resident_memory_bytes'),
    heapUsed: sum('nodejs_heap_size_used_bytes'),
    connections: sum('agentgate_connections '),
    dials: sum('agentgate_dial_seconds_count'),
  };
}

/** POST .../conn for every id, `concurrency` at a time; the statuses seen. */
async function connAll(base, ids, concurrency) {
  const pool = new Pool(base, { connections: concurrency });
  const statuses = {};
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      const res = await pool.request({ method: 'POST', path: `/workspaces/${id}/conn`, headers: AUTH });
      await res.body.dump();
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await pool.close();
  return statuses;
}

// ---- in-process helpers: the counting server, the silent agent, the black hole ----------------
async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${server.address().port}`;
}

/** Counts every TCP connection it is offered (the sentinel's agents: must stay at 0). */
async function countingServer() {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections += 1;
    socket.destroy();
  });
  const url = await listen(server);
  return { url, count: () => connections, close: () => new Promise((r) => server.close(r)) };
}

/**
 * An agent that accepts, reads `GET /<workspace id>/health` and never answers: a dial waits on
 * it. `expect(id)` resolves with the socket once that workspace's dial reached it.
 */
async function silentAgent() {
  const waiting = new Map();
  const sockets = new Set();
  const server = http.createServer((req) => {
    const id = (req.url ?? '').split('/')[1];
    waiting.get(id)?.(req.socket);
    waiting.delete(id);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.keepAliveTimeout = 0;
  server.headersTimeout = 0;
  server.requestTimeout = 0;
  const url = await listen(server);
  return {
    url,
    expect: (id) => new Promise((resolve) => waiting.set(id, resolve)),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/** Stops the frozen process and fills its accept queue: every later connect hangs in SYN_SENT. */
async function blackHole(procs, proc, port) {
  proc.child.kill('SIGSTOP');
  const fillers = [];
  for (let i = 0; i < 4; i += 1) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    fillers.push(socket);
  }
  await sleep(100);
  const probe = await new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('hangs');
    }, 300);
    socket.on('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      resolve(e.code);
    });
  });
  return {
    verified: probe === 'hangs',
    probe,
    close: async () => {
      for (const s of fillers) s.destroy();
      await procs.stop(proc, 'SIGKILL');
    },
  };
}

// ---- the scenarios ------------------------------------------------------------------------------
/**
 * Interleaved closed-loop runs: for each run, every config once, in order (baseline, scenario,
 * baseline, scenario, ...), each after its own warm-up; `before` runs before each measured run.
 */
async function interleaved(configs) {
  for (const c of configs) {
    await c.before?.();
    await closedLoop({ ...c.load, seconds: opts.warmup, connections: opts.connections });
  }
  const runs = Object.fromEntries(configs.map((c) => [c.id, []]));
  for (let r = 0; r < opts.runs; r += 1) {
    for (const c of configs) {
      await c.before?.();
      const during = c.during?.();
      const result = await closedLoop({ ...c.load, seconds: opts.seconds, connections: opts.connections });
      Object.assign(result, (await during) ?? {}, (await c.after?.()) ?? {});
      runs[c.id].push(result);
      log(`  ${c.id.padEnd(16)} run ${r + 1}: ${Math.round(result.reqPerSec)} req/s  p50 ${result.p50} ms  p99 ${result.p99} ms  unexpected ${result.unexpected}`);
    }
  }
  return runs;
}

function summarize(runs) {
  return {
    reqPerSec: median(runs.map((r) => r.reqPerSec)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    unexpected: runs.reduce((a, r) => a + r.unexpected, 0),
  };
}

async function main() {
  const started = new Date();
  const serverUrl = SERVER_URL;
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'agentgate-bench-'));
  const procs = new Processes({ pin: opts.pin, logDir: tmp });
  const closers = [];
  let database;
  const notes = [];
  const cleanup = async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await procs.stopAll();
    await database?.drop().catch(() => undefined);
    await rm(tmp, { recursive: true, force: true });
  };
  const interrupted = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    if (opts.pin) pinSelf(1);
    const info = await machine(serverUrl);
    log(`agentgate bench: ${info.cpu}, ${info.cores} cores, Node ${info.node}, PostgreSQL ${info.postgres}`);
    log(opts.pin ? 'pinning: servers on core 0, load generator on core 1' : 'pinning: off');

    // Database and seed.
    database = await createBenchDatabase(serverUrl);
    await migrate(database.url);
    const sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    closers.push(() => sql.end());

    const counting = await countingServer();
    closers.push(counting.close);
    const silent = await silentAgent();
    closers.push(silent.close);

    const [agent, frozen] = await Promise.all([
      procs.start('agent', process.execPath, [new URL('servers/agent.mjs', import.meta.url).pathname, String(await freePort())], { waitFor: /listening (\d+)/ }),
      procs.start('frozen', process.execPath, [new URL('servers/frozen.mjs', import.meta.url).pathname], { waitFor: /listening (\d+)/ }),
    ]);
    const agentUrl = `http://127.0.0.1:${agent.match[1]}`;
    const frozenPort = Number(frozen.match[1]);

    const seedStart = performance.now();
    const gone = await seed(sql, { label: 'gone', count: opts.workspaces, address: counting.url, state: 'gone' });
    const live = await seed(sql, { label: 'live', count: opts.workspaces, address: agentUrl, state: 'connected' });
    const blackholed = await seed(sql, { label: 'blackholed', count: opts.samples, address: `http://127.0.0.1:${frozenPort}`, state: 'connected' });
    const silentIds = await seed(sql, { label: 'silent', count: opts.samples, address: silent.url, perWorkspacePath: true, state: 'connected' });
    await sql.query('vacuum analyze');
    const seedSeconds = (performance.now() - seedStart) / 1000;
    log(`seeded ${gone.length + live.length + blackholed.length + silentIds.length} workspaces in ${seedSeconds.toFixed(2)} s`);
    const hot = live[0];
    const proxiedWs = live[1];

    // Servers.
    const node = process.execPath;
    const gatePort = await freePort();
    const gateEnv = (extra = {}) => ({
      DATABASE_URL: database.url,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      AGENTGATE_RATE_LIMIT_PER_MIN: '0',
      AGENTGATE_ADMIN_TOKEN: ADMIN,
      AGENTGATE_DATA_DIR: path.join(tmp, 'data'),
      ...extra,
    });
    const gateBase = `http://127.0.0.1:${gatePort}`;
    const baselines = { prepared: `http://127.0.0.1:${await freePort()}`, plain: `http://127.0.0.1:${await freePort()}` };
    const replyFromBase = `http://127.0.0.1:${await freePort()}`;
    const script = (name) => new URL(`servers/${name}`, import.meta.url).pathname;
    const portOf = (base) => new URL(base).port;
    const starting = [
      [procs.start('agentgate', node, [CLI, 'serve'], { env: gateEnv({ PORT: String(gatePort) }) }), `${gateBase}/readyz`],
      ...['prepared', 'plain'].map((mode) => [
        procs.start(`baseline-${mode}`, node, [script('db-baseline.mjs'), mode, portOf(baselines[mode])], { env: { DATABASE_URL: database.url } }),
        `${baselines[mode]}/healthz`,
      ]),
      [procs.start('reply-from', node, [script('reply-from.mjs'), agentUrl, portOf(replyFromBase)]), `${replyFromBase}/healthz`],
    ];
    const servers = await Promise.all(
      starting.map(async ([starts, url]) => {
        const proc = await starts;
        await procs.ready(proc, url);
        return proc;
      }),
    );
    const gate = servers[0];

    let nginxBase;
    if (info.nginx === 'not installed') {
      const message = 'nginx not installed (apt-get install nginx-light): skipped';
      log(message);
      notes.push(message);
    } else {
      const nginxPort = await freePort();
      const dir = path.join(tmp, 'nginx');
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'nginx.conf'), nginxConfig(dir, nginxPort, agent.match[1]));
      const proc = await procs.start('nginx', 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')]);
      nginxBase = `http://127.0.0.1:${nginxPort}`;
      await procs.ready(proc, `${nginxBase}/workspaces/x/conn/health`);
    }

    // Sentinel warm-up, then the gate's memory before any connection is cached.
    const sentinelPath = () => `/workspaces/${pick(gone)}/conn`;
    await closedLoop({ origin: gateBase, path: sentinelPath, headers: AUTH, seconds: opts.warmup, connections: opts.connections, expect: 409 });
    await sleep(tiny ? 200 : 1000);
    const memBefore = await metricsOf(gateBase);

    // Every live workspace's connection cached, through the API, as a chat server would.
    await refreshAgents(sql);
    const warmStart = performance.now();
    const warmStatuses = await connAll(gateBase, live, opts.connections);
    const warmSeconds = (performance.now() - warmStart) / 1000;
    await sleep(tiny ? 200 : 1000);
    const memAfter = await metricsOf(gateBase);
    log(`cached ${memAfter.connections} connections in ${warmSeconds.toFixed(1)} s (statuses ${JSON.stringify(warmStatuses)})`);
    const memory = {
      connections: memAfter.connections - memBefore.connections,
      rssBefore: memBefore.rss,
      rssAfter: memAfter.rss,
      heapBefore: memBefore.heapUsed,
      heapAfter: memAfter.heapUsed,
      warmStatuses,
    };
    memory.rssPerConnKiB = (memAfter.rss - memBefore.rss) / 1024 / Math.max(1, memory.connections);
    memory.heapPerConnKiB = (memAfter.heapUsed - memBefore.heapUsed) / 1024 / Math.max(1, memory.connections);

    // Group 1: the gate's read against the database baselines.
    log(`gate read: ${opts.runs} x ${opts.seconds} s, ${opts.connections} callers`);
    const freshen = async () => refreshAgents(sql);
    const dialsBefore = { value: 0 };
    const countDials = async () => {
      dialsBefore.value = (await metricsOf(gateBase)).dials;
    };
    const dialsSince = async () => ({ dials: (await metricsOf(gateBase)).dials - dialsBefore.value });
    const contactsBefore = { value: 0 };
    const readGroup = await interleaved([
      { id: 'prepared', load: { origin: baselines.prepared, path: sentinelPath } },
      { id: 'plain', load: { origin: baselines.plain, path: sentinelPath } },
      {
        id: 'sentinel',
        load: { origin: gateBase, path: sentinelPath, headers: AUTH, expect: 409 },
        before: async () => {
          contactsBefore.value = counting.count();
        },
        after: async () => ({ agentContacts: counting.count() - contactsBefore.value }),
      },
      {
        id: 'cached-uniform',
        load: { origin: gateBase, path: () => `/workspaces/${pick(live)}/conn`, headers: AUTH },
        before: async () => {
          await freshen();
          await countDials();
        },
        during: () => sampleHealthz(procs, gateBase),
        after: dialsSince,
      },
      {
        id: 'cached-hot',
        load: { origin: gateBase, path: () => `/workspaces/${hot}/conn`, headers: AUTH },
        before: async () => {
          await freshen();
          await countDials();
        },
        after: dialsSince,
      },
    ]);

    // Group 2: a proxied small GET against the agent directly, reply-from and nginx.
    log(`proxy: ${opts.runs} x ${opts.seconds} s, ${opts.connections} callers`);
    const toolPath = '/tool/small';
    const proxyConfigs = [
      { id: 'direct', load: { origin: agentUrl, method: 'GET', path: () => toolPath } },
      { id: 'reply-from', load: { origin: replyFromBase, method: 'GET', path: () => `/workspaces/${proxiedWs}/conn${toolPath}` } },
    ];
    if (nginxBase) proxyConfigs.push({ id: 'nginx', load: { origin: nginxBase, method: 'GET', path: () => `/workspaces/${proxiedWs}/conn${toolPath}` } });
    proxyConfigs.push({
      id: 'proxied',
      load: { origin: gateBase, method: 'GET', path: () => `/workspaces/${proxiedWs}/conn${toolPath}`, headers: AUTH },
      before: async () => {
        await freshen();
        await countDials();
      },
      after: dialsSince,
    });
    const proxyGroup = await interleaved(proxyConfigs);

    // Group 3: added latency at a fixed rate, open loop, interleaved.
    log(`added latency: ${opts.runs} x ${opts.seconds} s at ${opts.rate} requests/s`);
    const latencyConfigs = [
      { id: 'direct', origin: agentUrl, path: () => toolPath, headers: {} },
      { id: 'proxied', origin: gateBase, path: () => `/workspaces/${proxiedWs}/conn${toolPath}`, headers: AUTH },
    ];
    for (const c of latencyConfigs) await openLoop({ ...c, rate: opts.rate, seconds: Math.min(1, opts.warmup) });
    const latencyRuns = { direct: [], proxied: [] };
    for (let r = 0; r < opts.runs; r += 1) {
      for (const c of latencyConfigs) {
        await freshen();
        const result = await openLoop({ ...c, rate: opts.rate, seconds: opts.seconds });
        latencyRuns[c.id].push(result);
        log(`  ${c.id.padEnd(16)} run ${r + 1}: p50 ${result.p50.toFixed(3)} ms  p99 ${result.p99.toFixed(3)} ms  send lag p99 ${result.sendLagP99.toFixed(3)} ms  unexpected ${result.unexpected}`);
      }
    }
    // Group 3b: an MCP tools/call through the front door against the agent's own /mcp.
    log(`mcp: ${opts.runs} x ${opts.mcpCalls} sequential tools/call, direct and through the gate`);
    const mcp = await mcpLatency(agentUrl, gateBase, proxiedWs, freshen);
    log(`  the gate adds p50 ${fmt3(mcp.addedP50)} ms, p99 ${fmt3(mcp.addedP99)} ms (direct p50 ${fmt3(mcp.direct.p50)}, gated p50 ${fmt3(mcp.gated.p50)})`);
    const memEnd = await metricsOf(gateBase);

    // Group 4: dial timeout and caller abort, on a gate of their own with a short dial bound.
    await procs.stop(gate);
    const dialGatePort = await freePort();
    const dialGate = await procs.start('agentgate-dial', node, [CLI, 'serve'], {
      env: gateEnv({ PORT: String(dialGatePort), AGENTGATE_DIAL_TIMEOUT_MS: String(opts.dialTimeoutMs) }),
    });
    const dialBase = `http://127.0.0.1:${dialGatePort}`;
    await procs.ready(dialGate, `${dialBase}/readyz`);
    const hole = await blackHole(procs, frozen, frozenPort);
    closers.push(hole.close);
    if (!hole.verified) notes.push(`the black hole did not hold (a probe connect ${hole.probe}): dial timeouts measure something else`);
    await freshen();
    log(`dial timeout: ${blackholed.length} dials to a black hole, bound ${opts.dialTimeoutMs} ms`);
    const dialTimeout = await dialTimeouts(dialBase, blackholed, opts.dialTimeoutMs);
    log(`caller abort: ${silentIds.length} callers leaving a dial`);
    await freshen();
    const abort = await abortReleases(dialBase, silentIds, silent);

    const finished = new Date();
    const results = {
      started: started.toISOString(),
      finished: finished.toISOString(),
      machine: { ...info, loadAverageAtEnd: os.loadavg().map((v) => Number(v.toFixed(2))) },
      options: opts,
      method: {
        pinning: opts.pin ? 'servers (agentgate, baselines, agent, nginx) on core 0, load generator on core 1; PostgreSQL not pinned' : 'none',
        gate: 'node dist/src/cli.js serve, LOG_LEVEL=info (logs to /dev/null), rate limit off, admin bearer token',
        closedLoop: `autocannon, ${opts.connections} connections, ${opts.seconds} s per run after ${opts.warmup} s of warm-up, ${opts.runs} interleaved runs, medians`,
        openLoop: `${opts.rate} requests/s scheduled at fixed times, latency from the scheduled time`,
      },
      seed: { database: new URL(database.url).pathname.slice(1), workspaces: opts.workspaces, seconds: Number(seedSeconds.toFixed(3)), cacheWarmSeconds: Number(warmSeconds.toFixed(3)) },
      runs: { ...readGroup, ...proxyGroup },
      latency: {
        runs: latencyRuns,
        direct: { p50: median(latencyRuns.direct.map((r) => r.p50)), p99: median(latencyRuns.direct.map((r) => r.p99)) },
        proxied: { p50: median(latencyRuns.proxied.map((r) => r.p50)), p99: median(latencyRuns.proxied.map((r) => r.p99)) },
      },
      healthz: healthzSummary(readGroup['cached-uniform']),
      dialTimeout,
      abort,
      memory: { ...memory, connectionsAtEnd: memEnd.connections },
      mcp,
      notes,
    };
    results.summary = Object.fromEntries(Object.entries(results.runs).map(([k, v]) => [k, summarize(v)]));
    results.latency.addedP50 = results.latency.proxied.p50 - results.latency.direct.p50;
    results.latency.addedP99 = results.latency.proxied.p99 - results.latency.direct.p99;
    results.checks = evaluate(results);

    await mkdir(outDir, { recursive: true });
    const stem = await freeStem(outDir, started.toISOString().slice(0, 10));
    await writeFile(path.join(outDir, `${stem}.json`), `${JSON.stringify(results, null, 2)}\n`);
    await writeFile(path.join(outDir, `${stem}.svg`), renderSvg(results));
    const markdown = renderMarkdown(results, `${stem}.svg`);
    await writeFile(path.join(outDir, `${stem}.md`), markdown);
    process.stdout.write(markdown);
    process.stdout.write(`\nwritten to ${path.join(outDir, stem)}.{md,json,svg}\n`);
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await cleanup();
  }
}

const fmt3 = (n) => (Number.isFinite(n) ? n.toFixed(3) : String(n));

/**
 * MCP tools/call, one at a time on one keep-alive connection, to the agent's own /mcp and to the
 * front door of a workspace whose agent it is, interleaved run by run after a warm-up (which
 * also makes the gate's session with the agent): the latency the gate adds to a call.
 */
async function mcpLatency(agentUrl, gateBase, workspaceId, freshen) {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'small', arguments: {} } });
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const targets = {
    direct: { pool: new Pool(agentUrl, { connections: 1 }), path: '/mcp', headers },
    gated: { pool: new Pool(gateBase, { connections: 1 }), path: `/workspaces/${workspaceId}/mcp`, headers: { ...headers, ...AUTH } },
  };
  const unexpected = { direct: 0, gated: 0 };
  const call = async (id) => {
    const t = targets[id];
    const t0 = performance.now();
    const res = await t.pool.request({ method: 'POST', path: t.path, headers: t.headers, body });
    const text = await res.body.text();
    const ms = performance.now() - t0;
    if (res.statusCode !== 200 || !text.includes('"result"') || text.includes('"isError":true')) unexpected[id] += 1;
    return ms;
  };
  const runs = { direct: [], gated: [] };
  try {
    for (const id of ['direct', 'gated']) for (let i = 0; i < Math.min(50, opts.mcpCalls); i += 1) await call(id);
    for (let r = 0; r < opts.runs; r += 1) {
      for (const id of ['direct', 'gated']) {
        await freshen();
        const samples = [];
        for (let i = 0; i < opts.mcpCalls; i += 1) samples.push(await call(id));
        runs[id].push({ p50: percentile(samples, 50), p99: percentile(samples, 99) });
      }
    }
  } finally {
    await Promise.all(Object.values(targets).map((t) => t.pool.close()));
  }
  const direct = { p50: median(runs.direct.map((x) => x.p50)), p99: median(runs.direct.map((x) => x.p99)) };
  const gated = { p50: median(runs.gated.map((x) => x.p50)), p99: median(runs.gated.map((x) => x.p99)) };
  return { calls: opts.mcpCalls, runs, direct, gated, addedP50: gated.p50 - direct.p50, addedP99: gated.p99 - direct.p99, unexpected };
}

async function freeStem(dir, date) {
  for (let i = 1; ; i += 1) {
    const stem = i === 1 ? date : `${date}-${i}`;
    try {
      await access(path.join(dir, `${stem}.md`));
    } catch {
      return stem;
    }
  }
}

/** /healthz sampled every 10 ms by a process of its own while a run lasts. */
async function sampleHealthz(procs, base) {
  const out = await procs.run('healthz-sampler', process.execPath, [
    new URL('servers/sampler.mjs', import.meta.url).pathname,
    `${base}/healthz`,
    '10',
    String(Math.max(100, opts.seconds * 1000 - 300)),
  ]);
  const { latencies, failures } = JSON.parse(out);
  return { healthz: { samples: latencies.length, failures, p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: percentile(latencies, 100) } };
}

function healthzSummary(runs) {
  const samples = runs.map((r) => r.healthz).filter(Boolean);
  return {
    samples: samples.reduce((a, s) => a + s.samples, 0),
    failures: samples.reduce((a, s) => a + s.failures, 0),
    p50: median(samples.map((s) => s.p50)),
    p99: median(samples.map((s) => s.p99)),
    max: Math.max(...samples.map((s) => s.max)),
  };
}

/** Each id once (a failed dial is remembered), 10 at a time: answer time minus the bound. */
async function dialTimeouts(base, ids, boundMs) {
  const concurrency = 10;
  const pool = new Pool(base, { connections: concurrency });
  // Warm-up, as every other scenario has: the gate is a fresh process, and its first calls
  // would otherwise open its database connections and our sockets inside the measured time.
  await Promise.all(
    Array.from({ length: 4 * concurrency }, async () => {
      const res = await pool.request({ method: 'POST', path: `/workspaces/${randomUUID()}/conn`, headers: AUTH });
      await res.body.dump();
    }),
  );
  const samples = [];
  const codes = {};
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++];
      const t0 = performance.now();
      const res = await pool.request({ method: 'POST', path: `/workspaces/${id}/conn`, headers: AUTH });
      const body = await res.body.json().catch(() => ({}));
      const ms = performance.now() - t0;
      const code = `${res.statusCode} ${body.code ?? ''}`.trim();
      codes[code] = (codes[code] ?? 0) + 1;
      samples.push(ms - boundMs);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await pool.close();
  return { boundMs, samples: samples.length, codes, errorP50: percentile(samples, 50), errorP99: percentile(samples, 99), errorMax: percentile(samples, 100), errorMin: percentile(samples, 0) };
}

/**
 * One at a time: a caller's POST .../conn waits on a dial the silent agent holds; once the dial's
 * request reached the agent, the caller leaves (its socket destroyed), and the release time is
 * until the agent saw the dial's socket close. Both ends are in this process, on one clock.
 */
async function abortReleases(base, ids, silent) {
  const { hostname, port } = new URL(base);
  const samples = [];
  let notReached = 0;
  let notReleased = 0;
  for (const id of ids) {
    const reached = silent.expect(id);
    const req = http.request({ host: hostname, port, method: 'POST', path: `/workspaces/${id}/conn`, headers: AUTH, agent: false });
    req.on('error', () => undefined);
    req.end();
    const socket = await within(reached, 2000);
    if (!socket) {
      notReached += 1;
      req.destroy();
      continue;
    }
    const closed = new Promise((resolve) => socket.once('close', () => resolve(performance.now())));
    const t0 = performance.now();
    req.destroy();
    const t1 = await within(closed, 2000);
    // Not released within 2 s counts as 2 s (a lower bound), not as a missing sample.
    if (t1 === undefined) notReleased += 1;
    samples.push(t1 === undefined ? 2000 : t1 - t0);
  }
  return { samples: samples.length, notReached, notReleased, p50: percentile(samples, 50), p99: percentile(samples, 99), max: percentile(samples, 100) };
}

function nginxConfig(dir, port, agentPort) {
  return `worker_processes 1;
master_process off;
daemon off;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream agent {
    server 127.0.0.1:${agentPort};
    keepalive 128;
  }
  server {
    listen 127.0.0.1:${port};
    location ~ ^/workspaces/[^/]+/conn(/.*)$ {
      proxy_pass http://agent$1$is_args$args;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

await main();
