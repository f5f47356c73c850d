// Every migration, by name, in order. Listed statically (not read from the directory) so the
// same code runs compiled and under the test runner.
import type { Migration } from 'kysely';
import * as m0001 from './0001_initial.js';

export const migrations: Record<string, Migration> = {
  '0001_initial': m0001,
};
