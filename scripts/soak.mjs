#!/usr/bin/env node
// `npm run soak -- --minutes N`: the soak run of test/soak/ (never part of `npm test`). Runs
// vitest with the soak configuration; the run's length bounds it, and it stops by itself.
// Options: --minutes N (required, 0.2 to 120), --workspaces N, --rate N (chat calls/s),
// --real-agents N. The database is chosen as for `npm test` (TEST_DATABASE_URL, or embedded).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(import.meta.dirname, '..');

function fail(message) {
  process.stderr.write(`soak: ${message}\nusage: npm run soak -- --minutes N [--workspaces N] [--rate N] [--real-agents N]\n`);
  process.exit(64);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      minutes: { type: 'string' },
      workspaces: { type: 'string' },
      rate: { type: 'string' },
      'real-agents': { type: 'string' },
    },
    strict: true,
  }));
} catch (error) {
  fail(error.message);
}

const minutes = Number(values.minutes);
if (values.minutes === undefined) fail('--minutes is required');
if (!Number.isFinite(minutes) || minutes < 0.2 || minutes > 120) fail('--minutes must be a number from 0.2 to 120');
const env = { ...process.env, SOAK_MINUTES: String(minutes) };
for (const [flag, name, min, max] of [
  ['workspaces', 'SOAK_WORKSPACES', 1, 2000],
  ['rate', 'SOAK_RATE', 1, 1000],
  ['real-agents', 'SOAK_REAL_AGENTS', 0, 50],
]) {
  if (values[flag] === undefined) continue;
  const n = Number(values[flag]);
  if (!Number.isInteger(n) || n < min || n > max) fail(`--${flag} must be an integer from ${min} to ${max}`);
  env[name] = String(n);
}

const child = spawn(
  process.execPath,
  [path.join(root, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test/soak/vitest.soak.config.ts'],
  { cwd: root, env, stdio: 'inherit' },
);
// Ctrl-C reaches vitest through the terminal's process group; a plain SIGTERM is passed on.
process.on('SIGTERM', () => child.kill('SIGTERM'));
process.on('SIGINT', () => undefined);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
