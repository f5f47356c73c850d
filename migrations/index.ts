// Every migration, by name, in order. Listed statically (not read from the directory) so the
// same code runs compiled and under the test runner.
import type { Migration } from 'kysely';
import * as m0001 from './0001_initial.js';
import * as m0002 from './0002_gate_signing_keys.js';
import * as m0003 from './0003_mcp_cancels.js';

export const migrations: Record<string, Migration> = {
  '0001_initial': m0001,
  '0002_gate_signing_keys': m0002,
  '0003_mcp_cancels': m0003,
};
