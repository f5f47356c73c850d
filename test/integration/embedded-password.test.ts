// The embedded PostgreSQL never runs with a password anyone could know: a data directory found
// without its password file gets a new random password, set while no server runs, before its
// server starts (it used to fall back to a fixed, public one for ever, and any local user could
// then log in as superuser on loopback). Real binaries, a real data directory.
import { mkdtemp, readFile, rm, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import { startEmbeddedDatabase } from '../../src/db/embedded.js';

/** Whether `password` logs in as the superuser. */
async function logsIn(port: number, password: string): Promise<boolean> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

it('a data directory without its password file gets a new random password at start, never the old fixed one', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-pw-'));
  try {
    const first = await startEmbeddedDatabase({ dataDir: dir });
    const file = path.join(first.dataDir, 'pg-password');
    const original = (await readFile(file, 'utf8')).trim();
    expect(original).toMatch(/^[A-Za-z0-9_-]{32}$/);
    await first.stop();

    await unlink(file);
    const second = await startEmbeddedDatabase({ dataDir: dir, ephemeral: true });
    try {
      const renewed = (await readFile(file, 'utf8')).trim();
      expect(renewed).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(renewed).not.toBe(original);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(await logsIn(second.port, renewed)).toBe(true);
      // Neither the password of old nor the fixed one of older versions logs in.
      expect(await logsIn(second.port, original)).toBe(false);
      expect(await logsIn(second.port, 'agentgate-embedded')).toBe(false);
      // The server's data survived: the same cluster, restarted.
      const client = new pg.Client({ connectionString: second.url });
      await client.connect();
      expect((await client.query<{ n: number }>('select 1 as n')).rows[0]?.n).toBe(1);
      await client.end();
    } finally {
      await second.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
