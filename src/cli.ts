#!/usr/bin/env node
// The `agentgate` command: serve (default) and migrate up|down|status.
import { parseArgs } from 'node:util';
import closeWithGrace from 'close-with-grace';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';
import { openDatabaseRuntime } from './runtime.js';
import { migrateDown, migrateUp, migrationStatus } from './db/migrate.js';

const USAGE = `usage: agentgate <command> [options]

commands:
  serve                      run the service (default)
  migrate up|down|status     apply, revert the last, or list migrations

Configuration comes from the environment (see README.md): DATABASE_URL, or an embedded
PostgreSQL in AGENTGATE_DATA_DIR when it is unset.`;

class UsageError extends Error {}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function serve(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  const server = await startServer(config, logger);
  out(`agentgate listening on ${server.url}`);
  if (server.generatedAdminToken) {
    out(`admin token (shown once, keep it): ${server.generatedAdminToken}`);
  }
  // Our own drain is bounded by the shutdown grace; this is the last resort above it.
  closeWithGrace({ delay: config.shutdownGraceMs + 10_000, logger }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'fatal error; shutting down');
    else logger.info({ signal }, 'shutting down');
    await server.close();
  });
}

async function migrate(config: Config, action: string | undefined): Promise<void> {
  if (action !== 'up' && action !== 'down' && action !== 'status') {
    throw new UsageError('migrate needs one of: up, down, status');
  }
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const runtime = await openDatabaseRuntime(config, logger);
  try {
    const { db } = runtime.handle;
    if (action === 'status') {
      for (const m of await migrationStatus(db)) {
        out(`${m.executedAt ? 'applied' : 'pending'}  ${m.name}${m.executedAt ? `  ${m.executedAt.toISOString()}` : ''}`);
      }
    } else {
      const names = action === 'up' ? await migrateUp(db) : await migrateDown(db);
      out(names.length === 0 ? 'nothing to do' : names.map((n) => `${action === 'up' ? 'applied' : 'reverted'} ${n}`).join('\n'));
    }
  } finally {
    await runtime.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { help: { type: 'boolean', short: 'h' } },
  });
  const [command = 'serve', ...rest] = positionals;
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const config = loadConfig(process.env);
  switch (command) {
    case 'serve':
      if (rest.length > 0) throw new UsageError(`serve takes no arguments (got ${rest.join(' ')})`);
      await serve(config);
      return -1; // keeps running
    case 'migrate':
      await migrate(config, rest[0]);
      return 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`agentgate: ${error.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`agentgate: ${(error as Error).message}\n${USAGE}\n`);
      process.exit(64); // EX_USAGE
    }
    const cause = (error as Error).cause;
    process.stderr.write(
      `agentgate: ${(error as Error).message}${cause instanceof Error ? `: ${cause.message}` : ''}\n`,
    );
    process.exit(1);
  },
);
