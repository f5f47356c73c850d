// The soak run's own configuration (`npm run soak -- --minutes N`): only `*.soak.ts` files, the
// same database set-up as the test suite, and a test timeout derived from the run's length.
import path from 'node:path';
import { defineConfig } from 'vitest/config';

const minutes = Number(process.env.SOAK_MINUTES ?? 1);

export default defineConfig({
  root: path.resolve(import.meta.dirname, '../..'),
  test: {
    include: ['test/soak/**/*.soak.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // Set-up (hundreds of workspaces and agents) and wind-down come on top of the run itself.
    testTimeout: Math.round(minutes * 60_000) + 180_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    // kysely's migrator imports migrations at runtime; inline it so vite resolves the .ts files.
    server: { deps: { inline: ['kysely'] } },
    // Interval lines are printed as they come, not buffered per test.
    disableConsoleIntercept: true,
    reporters: ['default'],
  },
});
