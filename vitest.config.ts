import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 60_000,
    // kysely's migrator imports migrations at runtime; inline it so vite resolves the .ts files.
    server: { deps: { inline: ['kysely'] } },
    reporters: ['default'],
  },
});
