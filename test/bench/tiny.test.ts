// The bench harness in its tiny mode (about 1 s per scenario, 50 workspaces, one run, no
// pinning): it must run every scenario and write well-formed results. Nothing here is about
// speed; `npm run bench` measures that, never a test.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';

const RUN = new URL('../../bench/run.mjs', import.meta.url).pathname;

const CONFIGS = ['prepared', 'plain', 'sentinel', 'cached-uniform', 'cached-hot', 'direct', 'reply-from', 'proxied'];
const CHECKS = [
  'sentinel-throughput',
  'sentinel-p99',
  'cached-uniform',
  'cached-hot',
  'proxied-vs-reply-from',
  'proxied-vs-direct',
  'added-latency-p50',
  'added-latency-p99',
  'healthz-p99',
  'dial-timeout-p99',
  'abort-release-p99',
  'memory-per-connection',
];

async function databaseExists(serverUrl: string, name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    const { rows } = await client.query('select 1 from pg_database where datname = $1', [name]);
    return rows.length > 0;
  } finally {
    await client.end();
  }
}

function runBench(out: string, serverUrl: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [RUN, '--tiny', '--out', out], {
      env: { ...process.env, BENCH_DATABASE_URL: serverUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('npm run bench, tiny mode', () => {
  let out: string | undefined;
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('runs every scenario and writes the table, the JSON and the chart', { timeout: 90_000 }, async () => {
    const serverUrl = inject('serverUrl');
    out = await mkdtemp(path.join(os.tmpdir(), 'agentgate-bench-test-'));

    const { code, stdout, stderr } = await runBench(out, serverUrl);
    expect(code, stderr).toBe(0);

    const files = (await readdir(out)).sort();
    expect(files).toHaveLength(3);
    const stem = files[0]!.replace(/\.\w+$/, '');
    expect(stem).toMatch(/^\d{4}-\d{2}-\d{2}(-\d+)?$/);
    expect(files).toEqual([`${stem}.json`, `${stem}.md`, `${stem}.svg`]);

    // JSON: every configuration measured, every target judged.
    const results = JSON.parse(await readFile(path.join(out, `${stem}.json`), 'utf8'));
    for (const key of ['machine', 'options', 'method', 'runs', 'summary', 'latency', 'healthz', 'dialTimeout', 'abort', 'memory', 'checks']) {
      expect(results, key).toHaveProperty(key);
    }
    expect(results.machine).toMatchObject({ cores: expect.any(Number), node: process.version, postgres: expect.any(String) });
    expect(results.options).toMatchObject({ tiny: true, runs: 1, workspaces: 50, pin: false });
    for (const id of CONFIGS) {
      expect(results.runs[id], id).toHaveLength(1);
      expect(results.summary[id].reqPerSec, id).toBeGreaterThan(0);
      expect(Number.isFinite(results.summary[id].p99), id).toBe(true);
    }
    expect(results.runs.sentinel[0].agentContacts).toBe(0);
    expect(results.latency.runs.direct).toHaveLength(1);
    expect(results.latency.runs.proxied).toHaveLength(1);
    expect(results.healthz.samples).toBeGreaterThan(0);
    expect(results.dialTimeout.samples).toBe(20);
    expect(results.abort.samples).toBe(20);
    expect(results.memory.connections).toBe(50);
    // MCP tools/call, direct and through the gate: every call answered, its added latency reported.
    expect(results.mcp).toMatchObject({ calls: 20, unexpected: { direct: 0, gated: 0 } });
    expect(results.mcp.runs.gated).toHaveLength(1);
    for (const key of ['addedP50', 'addedP99']) expect(Number.isFinite(results.mcp[key]), key).toBe(true);
    expect(results.checks.map((c: { id: string }) => c.id)).toEqual(CHECKS);
    for (const c of results.checks) expect(['pass', 'miss', 'invalid'], c.id).toContain(c.result);
    if (results.machine.nginx === 'not installed') {
      expect(results.notes).toContain('nginx not installed (apt-get install nginx-light): skipped');
    } else {
      expect(results.runs.nginx).toHaveLength(1);
    }

    // Markdown: the machine at the top, a table row per configuration and per target.
    const markdown = await readFile(path.join(out, `${stem}.md`), 'utf8');
    expect(stdout).toContain(markdown);
    expect(markdown).toMatch(/^- MCP tools\/call \(20 one at a time per run[^\n]*the gate adds p50 -?\d+\.\d{3} ms, p99 -?\d+\.\d{3} ms/m);
    expect(markdown).toMatch(/^# agentgate bench/);
    expect(markdown).toContain(`Node ${process.version}`);
    const rows = markdown.split('\n').filter((l) => l.startsWith('| '));
    const throughputRows = rows.filter((l) => /^\| (baseline|agentgate): /.test(l));
    expect(throughputRows.length).toBe(results.machine.nginx === 'not installed' ? 8 : 9);
    for (const row of throughputRows) expect(row.split('|').length, row).toBe(12);
    const targetRows = rows.filter((l) => / (pass|miss|invalid) \|$/.test(l));
    expect(targetRows).toHaveLength(CHECKS.length);

    // SVG: well-formed enough to open, one bar label per target.
    const svg = await readFile(path.join(out, `${stem}.svg`), 'utf8');
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/: (pass|miss|invalid)<\/text>/g)).toHaveLength(CHECKS.length);

    // It dropped the database it seeded.
    expect(results.seed.database).toMatch(/^agentgate_bench_/);
    expect(await databaseExists(serverUrl, results.seed.database)).toBe(false);
  });
});
