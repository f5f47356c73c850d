// A mutation spot check of the gate's decisions: each hand-written mutation below changes one
// thing in src/gate/decide.ts or src/gate/classify.ts (a comparison flipped or loosened, a
// condition dropped, a returned value changed), the unit tests that import the file run against
// it, and they must fail ("killed"). A mutation the tests let pass ("SURVIVED") is a rule no test
// pins down: add the row that tells the two apart to test/unit/decide.test.ts or classify.test.ts.
//
//   node scripts/mutation-check.mjs [--root <dir>] [--only <id,...>] [--verbose] [--dry-run]
//
// The file is changed in place and always put back (after each run, on an error, on SIGINT or
// SIGTERM), its modification time included. `--root` runs on another checkout (a git worktree,
// say) so that a working tree being edited is left alone. Every snippet must occur exactly once
// in its file: when the code changes, the check says which mutation no longer applies, rather
// than testing something else (`--dry-run` checks that, and changes nothing). The tests run with
// FC_SEED fixed (CI's seed unless set), with a config of their own: the repository's
// vitest.config.ts has a global setup that compiles dist/ (it would compile the mutated code) and
// needs PostgreSQL, which these pure tests do not.
// Exit status: 0 every mutation killed, 1 one survived, 2 the check could not run.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const DECIDE = 'src/gate/decide.ts';
const CLASSIFY = 'src/gate/classify.ts';

/** Each: an id, the file, a snippet found exactly once in it, and what replaces it. */
const MUTATIONS = [
  // decide.ts, isStrongDisconnect
  { id: 'D1', file: DECIDE, from: "return c.status === 'disconnected' && (c.cause", to: "return c.status !== 'disconnected' && (c.cause" },
  { id: 'D2', file: DECIDE, from: "(c.cause === 'goodbye' || c.disconnectedForMs", to: "(c.cause !== 'goodbye' || c.disconnectedForMs" },
  { id: 'D3', file: DECIDE, from: 'c.disconnectedForMs === null || c.disconnectedForMs >=', to: 'c.disconnectedForMs !== null || c.disconnectedForMs >=' },
  { id: 'D4', file: DECIDE, from: 'c.disconnectedForMs >= disconnectGraceMs', to: 'c.disconnectedForMs > disconnectGraceMs' },
  // decide.ts, decide
  { id: 'D5', file: DECIDE, from: "if (c.status === 'timeout') {", to: "if (c.status !== 'timeout') {" },
  { id: 'D6', file: DECIDE, from: "if (c.status === 'disconnected') {", to: "if (c.status !== 'disconnected') {" },
  { id: 'D7', file: DECIDE, from: "const detail = c.cause === 'goodbye' ?", to: "const detail = c.cause !== 'goodbye' ?" },
  { id: 'D8', file: DECIDE, from: "code: 'AGENT_DISCONNECTED', detail, evict: true", to: "code: 'AGENT_NEVER_CONNECTED', detail, evict: true" },
  { id: 'D9', file: DECIDE, from: '    evict = true;\n', to: '    evict = false;\n' },
  { id: 'D10', file: DECIDE, from: "if (cached === 'matching') return", to: "if (cached !== 'matching') return" },
  { id: 'D11', file: DECIDE, from: "evict = cached === 'stale';", to: "evict = cached !== 'stale';" },
  { id: 'D12', file: DECIDE, from: 'if (remembered) {', to: "if (remembered && c.status !== 'disconnected') {" },
  // decide.ts, endsCallsOn
  { id: 'D13', file: DECIDE, from: 'if (now === undefined || !now.current)', to: 'if (now !== undefined || !now.current)' },
  { id: 'D14', file: DECIDE, from: 'if (now === undefined || !now.current)', to: 'if (now === undefined)' },
  { id: 'D15', file: DECIDE, from: "if (c.status === 'timeout') return", to: "if (c.status !== 'timeout') return" },
  { id: 'D16', file: DECIDE, from: 'if (!isStrongDisconnect(c, disconnectGraceMs)) return undefined;', to: 'if (isStrongDisconnect(c, disconnectGraceMs)) return undefined;' },
  { id: 'D17', file: DECIDE, from: "return c.status === 'disconnected' && c.cause === 'goodbye'", to: "return c.status !== 'disconnected' && c.cause === 'goodbye'" },
  { id: 'D18', file: DECIDE, from: "return c.status === 'disconnected' && c.cause === 'goodbye'", to: "return c.status === 'disconnected' && c.cause !== 'goodbye'" },
  // decide.ts, leavesConnectionSuspect
  { id: 'D19', file: DECIDE, from: "code === 'AGENT_CONNECTION_LOST' ||", to: "code !== 'AGENT_CONNECTION_LOST' ||" },
  { id: 'D20', file: DECIDE, from: "code === 'AGENT_UNREACHABLE' ||", to: "code !== 'AGENT_UNREACHABLE' ||" },
  { id: 'D21', file: DECIDE, from: "|| code === 'AGENT_RESPONSE_TIMEOUT';", to: "|| code !== 'AGENT_RESPONSE_TIMEOUT';" },
  { id: 'D22', file: DECIDE, from: " || code === 'AGENT_RESPONSE_TIMEOUT';", to: ';' },
  // classify.ts, classifyAgent
  { id: 'C1', file: CLASSIFY, from: 'if (agent.firstConnectedAt === null) {', to: 'if (agent.firstConnectedAt !== null) {' },
  { id: 'C2', file: CLASSIFY, from: 'agent.connectionTimeoutSeconds > 0 &&', to: 'agent.connectionTimeoutSeconds >= 0 &&' },
  { id: 'C3', file: CLASSIFY, from: 'now - agent.createdAt > timeoutMs', to: 'now - agent.createdAt >= timeoutMs' },
  { id: 'C4', file: CLASSIFY, from: 'agent.lastConnectedAt ?? Number.NEGATIVE_INFINITY', to: 'agent.lastConnectedAt ?? Number.POSITIVE_INFINITY' },
  { id: 'C5', file: CLASSIFY, from: 'agent.disconnectedAt !== null && agent.disconnectedAt >= last', to: 'agent.disconnectedAt >= last' },
  { id: 'C6', file: CLASSIFY, from: 'agent.disconnectedAt >= last', to: 'agent.disconnectedAt > last' },
  { id: 'C7', file: CLASSIFY, from: "cause: 'goodbye',", to: "cause: 'silence'," },
  { id: 'C8', file: CLASSIFY, from: 'disconnectedForMs: Math.max(0, now - agent.disconnectedAt)', to: 'disconnectedForMs: now - agent.disconnectedAt' },
  { id: 'C9', file: CLASSIFY, from: 'if (now - last > inactiveTimeoutMs) {', to: 'if (now - last >= inactiveTimeoutMs) {' },
  { id: 'C10', file: CLASSIFY, from: 'agent.lastConnectedAt === null ? null :', to: 'agent.lastConnectedAt !== null ? null :' },
  // classify.ts, disconnectedSeconds
  { id: 'C11', file: CLASSIFY, from: "return c.status === 'disconnected' && c.disconnectedForMs", to: "return c.status !== 'disconnected' && c.disconnectedForMs" },
  { id: 'C12', file: CLASSIFY, from: 'c.disconnectedForMs !== null\n', to: 'c.disconnectedForMs === null\n' },
  { id: 'C13', file: CLASSIFY, from: 'Math.floor(c.disconnectedForMs / 1000)', to: 'Math.round(c.disconnectedForMs / 1000)' },
];

/** CI's seed (.ci/run), unless FC_SEED is set. */
const SEED = process.env.FC_SEED || '689728276';
const RUN_TIMEOUT_MS = 180_000;

function usage(message) {
  if (message) process.stderr.write(`mutation-check: ${message}\n`);
  process.stderr.write('usage: node scripts/mutation-check.mjs [--root <dir>] [--only <id,...>] [--verbose] [--dry-run]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const options = { root: path.resolve(import.meta.dirname, '..'), only: undefined, verbose: false, dryRun: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) usage(`${arg} needs a value`);
      return v;
    };
    if (arg === '--root') options.root = path.resolve(value());
    else if (arg === '--only') options.only = new Set(value().split(','));
    else if (arg === '--verbose') options.verbose = true;
    else if (arg === '--dry-run') options.dryRun = true;
    else if (arg === '--help' || arg === '-h') usage();
    else usage(`unknown argument ${arg}`);
  }
  return options;
}

const options = parseArgs(process.argv.slice(2));
const { root } = options;
const vitestBin = path.join(root, 'node_modules/vitest/vitest.mjs');
if (!existsSync(vitestBin)) usage(`no vitest under ${root}/node_modules (npm ci first)`);

const selected = options.only ? MUTATIONS.filter((m) => options.only.has(m.id)) : MUTATIONS;
if (options.only && selected.length !== options.only.size) usage(`unknown id in --only (ids: ${MUTATIONS.map((m) => m.id).join(', ')})`);

// ---------------------------------------------------------------------------------------------
// The file being mutated, put back whatever happens.

/** @type {{ file: string; original: string; mutated: string; atime: Date; mtime: Date } | undefined} */
let active;
/** @type {import('node:child_process').ChildProcess | undefined} */
let child;

function restore() {
  if (!active) return;
  const { file, original, mutated, atime, mtime } = active;
  active = undefined;
  const now = readFileSync(file, 'utf8');
  if (now === original) return;
  if (now !== mutated) {
    // Someone else wrote the file meanwhile: keep their version, and say where the original is.
    const backup = path.join(os.tmpdir(), `mutation-check-${path.basename(file)}-${process.pid}.orig`);
    writeFileSync(backup, original);
    process.stderr.write(`mutation-check: ${file} changed during the run; left as it is, the original saved to ${backup}\n`);
    process.exitCode = 2;
    return;
  }
  writeFileSync(file, original);
  // The same modification time as before: nothing that watches times (build-if-stale) sees a change.
  utimesSync(file, atime, mtime);
}

function onSignal(signal) {
  process.stderr.write(`\nmutation-check: ${signal}, putting the file back\n`);
  killChild();
  restore();
  process.exit(signal === 'SIGINT' ? 130 : 143);
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, onSignal);
process.on('exit', restore);

function killChild() {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL'); // vitest and its workers: the group the child leads
  } catch {
    child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------
// Checks before anything changes.

const problems = [];
const sources = new Map();
for (const m of selected) {
  const file = path.join(root, m.file);
  if (!sources.has(file)) {
    if (!existsSync(file)) {
      problems.push(`${m.id}: ${m.file} does not exist under ${root}`);
      continue;
    }
    sources.set(file, readFileSync(file, 'utf8'));
  }
  const text = sources.get(file);
  const count = text.split(m.from).length - 1;
  if (count !== 1) problems.push(`${m.id}: the snippet ${JSON.stringify(m.from)} occurs ${count} times in ${m.file}, not once`);
  if (m.from === m.to) problems.push(`${m.id}: the replacement is the snippet itself`);
}

/** The unit tests that import a source file (`src/gate/decide.ts` → `.../src/gate/decide.js`). */
function testsOf(sourceFile) {
  const dir = path.join(root, 'test/unit');
  const specifier = `/${sourceFile.replace(/\.ts$/, '.js')}'`;
  return readdirSync(dir)
    .filter((name) => name.endsWith('.test.ts') && readFileSync(path.join(dir, name), 'utf8').includes(specifier))
    .map((name) => `test/unit/${name}`)
    .sort();
}
const testsByFile = new Map();
for (const m of selected) {
  if (testsByFile.has(m.file)) continue;
  const tests = testsOf(m.file);
  if (tests.length === 0) problems.push(`${m.file}: no test under test/unit imports it`);
  testsByFile.set(m.file, tests);
}

if (problems.length > 0) {
  process.stderr.write(`mutation-check: the mutations do not match the code any more (fix the list in scripts/mutation-check.mjs):\n`);
  for (const p of problems) process.stderr.write(`  ${p}\n`);
  process.exit(2);
}

if (options.dryRun) {
  for (const m of selected) {
    const text = sources.get(path.join(root, m.file));
    process.stdout.write(`${m.id.padEnd(4)} ${m.file}:${lineOf(text, text.indexOf(m.from))}  ${m.from.trim()}  →  ${m.to.trim()}\n`);
  }
  for (const [file, tests] of testsByFile) process.stdout.write(`${file}: ${tests.join(' ')}\n`);
  process.stdout.write(`mutation-check: ${selected.length} mutations apply to ${root} (dry run: nothing changed, no test run)\n`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Runs.

const configDir = mkdtempSync(path.join(os.tmpdir(), 'mutation-check-'));
const config = path.join(configDir, 'vitest.config.mjs');
writeFileSync(config, "export default { test: { include: ['test/unit/**/*.test.ts'], pool: 'forks' } };\n");
process.on('exit', () => rmSync(configDir, { recursive: true, force: true }));

/** Runs the tests; resolves with how they ended and their output. */
function runTests(tests) {
  return new Promise((resolve) => {
    const started = performance.now();
    let output = '';
    let timedOut = false;
    child = spawn(process.execPath, [vitestBin, 'run', '--config', config, '--root', root, '--bail=1', '--reporter=dot', ...tests], {
      cwd: root,
      env: { ...process.env, FC_SEED: SEED, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => {
      timedOut = true;
      killChild();
    }, RUN_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      child = undefined;
      resolve({ passed: code === 0 && !timedOut, timedOut, output, seconds: (performance.now() - started) / 1000 });
    });
  });
}

function lineOf(text, index) {
  return text.slice(0, index).split('\n').length;
}

process.stdout.write(`mutation-check: ${selected.length} mutations under ${root}, FC_SEED=${SEED}\n`);
const allTests = [...new Set([...testsByFile.values()].flat())].sort();
process.stdout.write(`baseline (no mutation): ${allTests.join(' ')}\n`);
const baseline = await runTests(allTests);
if (!baseline.passed) {
  process.stderr.write(baseline.output);
  process.stderr.write(`mutation-check: the tests fail without any mutation${baseline.timedOut ? ' (timed out)' : ''}; nothing to check\n`);
  process.exit(2);
}
process.stdout.write(`baseline passed in ${baseline.seconds.toFixed(1)} s\n\n`);

const rows = [];
for (const m of selected) {
  const file = path.join(root, m.file);
  const original = readFileSync(file, 'utf8');
  if (original !== sources.get(file)) {
    process.stderr.write(`mutation-check: ${m.file} changed during the run; stopping\n`);
    process.exit(2);
  }
  const index = original.indexOf(m.from);
  const mutated = original.slice(0, index) + m.to + original.slice(index + m.from.length);
  const { atime, mtime } = statSync(file);
  let result;
  try {
    active = { file, original, mutated, atime, mtime };
    writeFileSync(file, mutated);
    result = await runTests(testsByFile.get(m.file));
  } finally {
    restore();
  }
  const verdict = result.timedOut ? 'killed (timeout)' : result.passed ? 'SURVIVED' : 'killed';
  const change = `${m.from.trim()}  →  ${m.to.trim()}`;
  rows.push({ id: m.id, where: `${m.file}:${lineOf(original, index)}`, change, verdict, seconds: result.seconds });
  process.stdout.write(`${m.id.padEnd(4)} ${verdict.padEnd(16)} ${result.seconds.toFixed(1).padStart(5)} s  ${m.file}:${lineOf(original, index)}\n`);
  if (options.verbose || verdict === 'SURVIVED') process.stdout.write(`${result.output}\n`);
}

// ---------------------------------------------------------------------------------------------
// The table.

const widths = {
  id: Math.max(2, ...rows.map((r) => r.id.length)),
  where: Math.max(5, ...rows.map((r) => r.where.length)),
  verdict: Math.max(7, ...rows.map((r) => r.verdict.length)),
};
process.stdout.write(`\n${'id'.padEnd(widths.id)}  ${'where'.padEnd(widths.where)}  ${'verdict'.padEnd(widths.verdict)}  mutation\n`);
for (const r of rows) {
  process.stdout.write(`${r.id.padEnd(widths.id)}  ${r.where.padEnd(widths.where)}  ${r.verdict.padEnd(widths.verdict)}  ${r.change.replace(/\n/g, '\\n')}\n`);
}
const survived = rows.filter((r) => r.verdict === 'SURVIVED');
process.stdout.write(`\n${rows.length - survived.length} of ${rows.length} killed`);
if (survived.length > 0) {
  process.stdout.write(`; survived: ${survived.map((r) => r.id).join(', ')} (a rule no test pins down: add the row that kills it)\n`);
  process.exitCode = 1;
} else {
  process.stdout.write('\n');
}
