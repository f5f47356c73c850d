#!/usr/bin/env node
// `npm run dashboard:render`: the picture of deploy/grafana/agentgate.json in docs/dashboard.png,
// drawn from real data without Grafana. It runs agentgate (`dist/src/cli.js serve`) with
// reference agents (`dist/src/cli.js agent`) under a short mixed load while scraping /metrics
// every second, evaluates every panel's queries over those scrapes (scripts/dashboard/promql.mjs,
// the PromQL subset the dashboard uses), draws the panels as HTML with inline SVG laid out by
// gridPos (scripts/dashboard/render-html.mjs), and screenshots the page with headless Chromium.
// A developer tool, not a test: it takes one to two minutes.
//
// Options: --seconds N (length of the load, default 60), --out <png> (default
// docs/dashboard.png), --html <file> (keep the page too). The database is a throwaway one on
// DASHBOARD_DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432/postgres), or the
// embedded PostgreSQL when that server cannot be reached. Chromium comes from PATH (`chromium`,
// `chromium-browser`, `google-chrome`) or CHROMIUM; on Debian: apt-get install chromium.
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { legendName, renderPage } from './dashboard/render-html.mjs';
import { Samples, parseExposition, queryRange } from './dashboard/promql.mjs';

const root = path.resolve(import.meta.dirname, '..');
const CLI = path.join(root, 'dist/src/cli.js');
const ADMIN = `dashboard-admin-${randomUUID()}`;
const SCRAPE_SECONDS = 1;
// Grafana's $__rate_interval is four scrape intervals at this zoom; 10 s keeps a 1 s scrape's
// rates readable over a one-minute run.
const RATE_INTERVAL = '10s';

function fail(message) {
  process.stderr.write(`dashboard:render: ${message}\n`);
  process.exit(1);
}

let opts;
try {
  ({ values: opts } = parseArgs({
    options: { seconds: { type: 'string', default: '60' }, out: { type: 'string', default: 'docs/dashboard.png' }, html: { type: 'string' } },
    strict: true,
  }));
} catch (error) {
  fail(`${error.message}\nusage: npm run dashboard:render -- [--seconds N] [--out <png>] [--html <file>]`);
}
const SECONDS = Number(opts.seconds);
if (!(SECONDS >= 20 && SECONDS <= 600)) fail('--seconds must be from 20 to 600');
const log = (line) => process.stderr.write(`dashboard:render: ${line}\n`);

const chromium =
  process.env.CHROMIUM ??
  ['chromium', 'chromium-browser', 'google-chrome'].find((name) => {
    try {
      execFileSync('which', [name], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
if (!chromium) fail('no Chromium on PATH (apt-get install chromium, or set CHROMIUM)');

// ---- processes -----------------------------------------------------------------------------

const cleanups = [];
const work = mkdtempSync(path.join(tmpdir(), 'agentgate-dashboard-'));
cleanups.push(async () => rmSync(work, { recursive: true, force: true }));

/** Starts `node <args>`; resolves once its stdout matches `pattern`. */
function startNode(args, env, pattern, name) {
  const child = spawn(process.execPath, args, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (c) => (err = (err + c).slice(-4000)));
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (c) => {
      out += c;
      const match = out.match(pattern);
      if (match) {
        out = '';
        resolve({ child, match });
      }
    });
    child.on('exit', (code) => reject(new Error(`${name} exited ${code}: ${err}`)));
  });
}

const stopped = (child) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r)));

async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function openDatabase() {
  const serverUrl = process.env.DASHBOARD_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const admin = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 2_000 });
  try {
    await admin.connect();
  } catch (error) {
    log(`${new URL(serverUrl).host} unreachable (${error.message}): using the embedded PostgreSQL`);
    await admin.end().catch(() => undefined);
    // As root, the embedded server runs as the postgres user, who must reach its data directory
    // (otherwise agentgate keeps the data under /var/lib/agentgate, outliving this run).
    chmodSync(work, 0o755);
    return { env: { AGENTGATE_DATA_DIR: path.join(work, 'data') }, url: undefined };
  }
  const name = `agentgate_dashboard_${Date.now().toString(36)}`;
  await admin.query(`create database ${name}`);
  cleanups.push(async () => {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  });
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { env: { DATABASE_URL: url.toString() }, url: url.toString() };
}

// ---- the gate's API ------------------------------------------------------------------------

let gateUrl;
async function call(method, route, { token = ADMIN, body, headers = {} } = {}) {
  try {
    const res = await fetch(gateUrl + route, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, body: json };
  } catch {
    return { status: 0, body: undefined };
  }
}

async function workspace(agents, transition = 'start') {
  const id = randomUUID();
  const put = await call('PUT', `/workspaces/${id}`, { body: { ownerId: randomUUID(), name: 'dashboard' } });
  if (put.status !== 201) throw new Error(`PUT workspace: ${put.status}`);
  const build = await call('POST', `/workspaces/${id}/builds`, { body: { transition, agents } });
  if (build.status !== 201) throw new Error(`POST build: ${build.status} ${JSON.stringify(build.body)}`);
  return { id, agents: build.body.agents };
}

async function referenceAgent(name) {
  const port = await freePort();
  const ws = await workspace([{ name: 'main', address: `http://127.0.0.1:${port}` }]);
  const tokenFile = path.join(work, `${name}.token`);
  writeFileSync(tokenFile, `${ws.agents[0].token}\n`, { mode: 0o600 });
  const dir = path.join(work, name);
  mkdirSync(dir);
  const { child } = await startNode(
    [CLI, 'agent', '--gate', gateUrl, '--token-file', tokenFile, '--listen', `127.0.0.1:${port}`, '--root', dir, '--heartbeat-ms', '2000'],
    { LOG_LEVEL: 'warn' },
    /agent listening on/,
    `agent ${name}`,
  );
  cleanups.push(async () => {
    child.kill('SIGTERM');
    await stopped(child);
  });
  return { ws, child };
}

/** Small agents in this process: one server answers the health checks of all of them. */
async function lightAgents(count) {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(req.url?.endsWith('/health') ? 200 : 404, { 'content-type': 'application/json' }).end('{"status":"ok"}');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const { port } = server.address();
  const address = (i) => `http://127.0.0.1:${port}/light${i}`;
  const list = [];
  for (let i = 0; i < count; i++) list.push(await workspace([{ name: 'main', address: address(i) }]));
  return { list, address };
}

/** An agent address that accepts connections and never answers: every dial to it times out. */
async function blackHole() {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.resume();
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return `http://127.0.0.1:${server.address().port}`;
}

// ---- the run -------------------------------------------------------------------------------

async function run() {
  execFileSync(process.execPath, [path.join(root, 'scripts/build-if-stale.mjs')], { stdio: 'inherit' });
  const database = await openDatabase();
  const gate = await startNode(
    [CLI, 'serve'],
    {
      ...database.env,
      PORT: '0',
      AGENTGATE_ADMIN_TOKEN: ADMIN,
      LOG_LEVEL: 'error',
      // Short bounds, so that a one-minute run shows dial timeouts, silent agents found out,
      // degraded answers and idle connections closed.
      AGENTGATE_DIAL_TIMEOUT_MS: '400',
      AGENTGATE_DIAL_BACKOFF_MS: '3000',
      AGENTGATE_INACTIVE_TIMEOUT_MS: '6000',
      AGENTGATE_DISCONNECT_GRACE_MS: '12000',
      AGENTGATE_DB_TIMEOUT_MS: '300',
      AGENTGATE_CONN_IDLE_MS: String(Math.round(SECONDS * 250)),
      AGENTGATE_MAX_REQUESTS_PER_TOKEN: '4',
    },
    /listening on (http:\/\/\S+)/,
    'agentgate',
  );
  gateUrl = gate.match[1];
  cleanups.push(async () => {
    gate.child.kill('SIGTERM');
    await stopped(gate.child);
  });
  const instance = new URL(gateUrl).host;
  log(`agentgate on ${gateUrl}${database.url ? '' : ' (embedded PostgreSQL)'}`);

  const tools = await referenceAgent('tools');
  const doomed = await referenceAgent('killed');
  const leaving = await referenceAgent('stopped');
  const { list: light, address: lightAddress } = await lightAgents(24);
  const hole = await workspace([{ name: 'main', address: await blackHole() }]);
  // One token per stream of calls, as separate chat servers would hold: the per-token cap on
  // calls in flight is for the burst below to meet, not the steady load.
  const chat = {};
  for (const name of ['light', 'tools', 'agents', 'unknown', 'hole', 'mcp']) chat[name] = (await call('POST', '/tokens', { body: { name, scope: 'conn' } })).body.token;
  const burst = (await call('POST', '/tokens', { body: { name: 'burst', scope: 'conn' } })).body;
  const spare = (await call('POST', '/tokens', { body: { name: 'spare', scope: 'conn' } })).body;
  await call('PUT', `/workspaces/${tools.ws.id}/conn/files?path=notes.txt`, { body: 'hello from the dashboard run', headers: { 'content-type': 'text/plain' } });

  const scrapes = [];
  const started = Date.now() / 1000;
  const at = () => Date.now() / 1000 - started;
  const scraper = (async () => {
    for (let next = Date.now(); at() < SECONDS + 2; next += SCRAPE_SECONDS * 1000) {
      const t = Date.now() / 1000;
      const res = await fetch(`${gateUrl}/metrics`).catch(() => undefined);
      if (res?.ok) scrapes.push({ t, series: parseExposition(await res.text(), { job: 'agentgate', instance }) });
      await sleep(Math.max(0, next + SCRAPE_SECONDS * 1000 - Date.now()));
    }
  })();

  // Light agents heartbeat as real ones do; the script stands in for them.
  const heartbeating = new Set([...light.map((w) => w.agents[0].token), hole.agents[0].token]);
  const heartbeats = setInterval(() => {
    for (const token of heartbeating) void call('POST', '/agent/heartbeat', { token });
  }, 2_000);
  for (const token of heartbeating) await call('POST', '/agent/heartbeat', { token });
  cleanups.push(async () => clearInterval(heartbeats));

  const pending = new Set();
  const fire = (promise) => {
    const tracked = promise.catch((error) => log(`a step of the load failed: ${error.message}`));
    pending.add(tracked);
    void tracked.finally(() => pending.delete(tracked));
  };
  const conn = (id, token) => call('POST', `/workspaces/${id}/conn`, { token });
  const proxied = (ws, route, init = {}) => call(init.method ?? 'GET', `/workspaces/${ws.id}/conn${route}`, { token: chat.tools, ...init });
  // One JSON-RPC request to a workspace's MCP endpoint (stateless: no session to open first).
  const mcp = (ws, method, params, token = chat.mcp) =>
    call('POST', `/workspaces/${ws.id}/mcp`, { token, body: { jsonrpc: '2.0', id: tick, method, params }, headers: { accept: 'application/json, text/event-stream' } });
  const events = [
    [0.35, 'SIGKILL to an agent (no goodbye)', () => doomed.child.kill('SIGKILL')],
    [0.5, 'the workspaces table locked for 2.5 s', () => lockWorkspaces(database.url)],
    [0.62, "the LISTEN connection's backend terminated", () => terminateListener(database.url)],
    [0.7, 'SIGTERM to an agent (goodbye)', () => leaving.child.kill('SIGTERM')],
    [0.8, 'a rebuild, a deleted workspace, a revoked token', async () => {
      const [rebuilt, deleted] = [light[1], light[2]];
      const build = await call('POST', `/workspaces/${rebuilt.id}/builds`, { body: { transition: 'start', agents: [{ name: 'main', address: lightAddress(1) }] } });
      heartbeating.add(build.body.agents[0].token);
      await call('DELETE', `/workspaces/${deleted.id}`);
      await call('DELETE', `/tokens/${spare.id}`);
    }],
  ];
  let tick = 0;
  log(`load for ${SECONDS} s`);
  while (at() < SECONDS) {
    const f = at() / SECONDS;
    tick += 1;
    while (events.length > 0 && f >= events[0][0]) {
      const [, what, act] = events.shift();
      log(`${at().toFixed(0)} s: ${what}`);
      fire(Promise.resolve().then(act));
    }
    // Cached connections: a new light workspace every few seconds until 40 % of the run; half of
    // them fall silent at 60 %, and their connections close once idle.
    const active = light.filter((_, i) => i < Math.ceil((f / 0.4) * light.length) && !(f > 0.6 && i % 2 === 0));
    const target = active[tick % Math.max(1, active.length)];
    if (target) fire(conn(target.id, chat.light));
    fire(conn(tools.ws.id, chat.tools));
    fire(conn(doomed.ws.id, chat.agents));
    fire(conn(leaving.ws.id, chat.agents));
    if (tick % 2 === 0) fire(conn(randomUUID(), chat.unknown)); // WORKSPACE_NOT_FOUND
    if (f > 0.15 && f < 0.5) fire(conn(hole.id, chat.hole)); // dial timeouts, then the remembered failure
    // Proxied tool calls: exec, file reads (one missing: the agent's own 404) and writes.
    const route = tick % 4;
    if (route === 0) fire(proxied(tools.ws, '/exec', { method: 'POST', body: { command: 'echo', args: ['hi'] } }));
    if (route === 1) fire(proxied(tools.ws, '/files?path=notes.txt'));
    if (route === 2) fire(proxied(tools.ws, '/files?path=missing.txt'));
    if (route === 3) fire(proxied(tools.ws, '/files?path=out.txt', { method: 'PUT', body: `tick ${tick}`, headers: { 'content-type': 'text/plain' } }));
    if (tick % 3 === 0) fire(proxied(doomed.ws, '/files?path=x', { token: chat.agents }));
    // MCP: tool calls and lists through the gate, a tool's own error, and calls on the killed agent.
    if (tick % 2 === 1) fire(mcp(tools.ws, 'tools/call', { name: 'exec', arguments: { command: 'echo', args: ['hi'] } }));
    if (tick % 4 === 1) fire(mcp(tools.ws, 'tools/list', {}));
    if (tick % 6 === 3) fire(mcp(tools.ws, 'tools/call', { name: 'exec', arguments: { command: 'false' } }));
    if (tick % 3 === 1) fire(mcp(doomed.ws, 'tools/call', { name: 'exec', arguments: { command: 'true' } }, chat.agents));
    if (tick % 8 === 0) fire(mcp(tools.ws, 'ping'));
    // Bursts over the per-token cap of 4 calls in flight: the rest are RATE_LIMITED.
    if (f > 0.75 && f < 0.9 && tick % 4 === 0) {
      for (let k = 0; k < 7; k++) {
        fire(call('POST', `/workspaces/${tools.ws.id}/conn/exec`, { token: burst.token, body: { command: 'sleep', args: ['0.6'] } }));
      }
    }
    await sleep(250);
  }
  await Promise.all(pending);
  await scraper;
  log(`${scrapes.length} scrapes`);
  return { scrapes, instance };
}

async function lockWorkspaces(url) {
  if (!url) return log('skipped: the embedded database is the gate\'s own, with no second client here');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('begin');
    await client.query('lock table workspaces in access exclusive mode');
    await sleep(2_500);
    await client.query('commit');
  } finally {
    await client.end();
  }
}

async function terminateListener(url) {
  if (!url) return log('skipped: the embedded database is the gate\'s own, with no second client here');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and application_name = 'agentgate-listener'`);
  } finally {
    await client.end();
  }
}

// ---- the picture ---------------------------------------------------------------------------

function draw({ scrapes, instance }) {
  const dashboard = JSON.parse(readFileSync(path.join(root, 'deploy/grafana/agentgate.json'), 'utf8'));
  const samples = new Samples(scrapes);
  const start = Math.ceil(scrapes[0].t) + 1;
  const end = Math.floor(scrapes[scrapes.length - 1].t);
  const range = { start, end, step: 1 };
  // Grafana's variables as a dashboard opened with "All" selected would substitute them.
  const substitute = (expr) =>
    expr.replaceAll('$__rate_interval', RATE_INTERVAL).replaceAll('$__range', `${end - start}s`).replaceAll('$job', '.*').replaceAll('$instance', '.*');
  const results = new Map();
  for (const panel of dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])])) {
    if (!panel.targets) continue;
    const series = panel.targets.flatMap((target) =>
      queryRange(substitute(target.expr), samples, range).map((s) => ({ name: legendName(target.legendFormat, s.labels), points: s.points })),
    );
    results.set(panel.id, series.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true })));
  }
  const empty = [...results].filter(([id, s]) => s.length === 0 && dashboard.panels.some((p) => p.id === id)).map(([id]) => id);
  if (empty.length > 0) log(`panels without data: ${empty.join(', ')}`);
  return renderPage(dashboard, results, range, {
    variables: [
      ['Data source', 'Prometheus'],
      ['Job', 'All'],
      ['Instance', 'All'],
    ],
    caption:
      `A static rendering of this dashboard's queries over ${scrapes.length} scrapes of /metrics (one a second, ` +
      `job="agentgate", instance="${instance}") from a ${SECONDS} s load run of agentgate with three reference agents, ` +
      `24 stand-in agents and one that never answers; ` +
      `$__rate_interval = ${RATE_INTERVAL}; drawn by scripts/render-dashboard.mjs, not by Grafana.`,
  });
}

function screenshot(page, out) {
  const htmlFile = path.join(work, 'dashboard.html');
  writeFileSync(htmlFile, page.html);
  if (opts.html) writeFileSync(opts.html, page.html);
  const profile = path.join(work, 'chromium');
  execFileSync(
    chromium,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--hide-scrollbars',
      `--user-data-dir=${profile}`,
      `--screenshot=${out}`,
      `--window-size=${page.width},${page.height}`,
      `file://${htmlFile}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 },
  );
  if (!existsSync(out)) throw new Error('Chromium wrote no screenshot');
}

let exitCode = 0;
try {
  const data = await run();
  const out = path.resolve(root, opts.out);
  mkdirSync(path.dirname(out), { recursive: true });
  screenshot(draw(data), out);
  log(`${path.relative(root, out)}: ${Math.round(statSync(out).size / 1024)} KB`);
} catch (error) {
  process.stderr.write(`dashboard:render: ${error.stack ?? error}\n`);
  exitCode = 1;
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch((e) => log(`cleanup: ${e.message}`));
}
process.exit(exitCode);
