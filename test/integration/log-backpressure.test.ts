// A log reader that stops reading (a stuck log pipe, a slow shipper) must cost log lines, never
// the process: what waits for the pipe is bounded, the lines dropped past it are counted in
// agentgate_log_lines_dropped_total, and the lines flow again, in order, once the reader reads.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { createLogger, droppedLogLines, stdoutDestination } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { eventually } from '../support/eventually.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

it('a stuck reader: lines past the bound are dropped and counted, memory stays bounded, and the kept lines arrive in order once it reads', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'agentgate-logs-'));
  const go = path.join(dir, 'go');
  // Reads nothing until told to, then everything.
  const reader = spawn('sh', ['-c', `while [ ! -e ${go} ]; do sleep 0.05; done; exec cat`], { stdio: ['pipe', 'pipe', 'ignore'] });
  cleanups.push(() => {
    reader.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  let received = '';
  reader.stdout.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
  // The pipe's write end as a plain descriptor, as stdout is to the process.
  const fd = (reader.stdin as unknown as { _handle: { fd: number } })._handle.fd;
  expect(fd).toBeGreaterThan(2);

  const bound = 64 * 1024;
  const logger = createLogger('info', stdoutDestination(fd, bound));
  const before = droppedLogLines();
  const padding = 'x'.repeat(200);
  const lines = 5_000; // about 1.3 MB, far more than the pipe (64 KiB) and the bound hold
  for (let seq = 0; seq < lines; seq += 1) logger.info({ seq, padding }, 'line');
  const dropped = droppedLogLines() - before;
  // At most the pipe's and the bound's worth kept; the rest dropped, each one counted.
  expect(dropped).toBeGreaterThan(lines / 2);
  expect(dropped).toBeLessThan(lines);
  expect(existsSync(go)).toBe(false);

  // The metric tells the same count.
  const metrics = new Metrics({ processMetrics: false });
  const scraped = async () => Number(/^agentgate_log_lines_dropped_total (\d+)$/m.exec(await metrics.registry.metrics())?.[1]);
  expect(await scraped()).toBe(droppedLogLines());

  writeFileSync(go, '');
  const kept = lines - dropped;
  const parsed = () => received.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { seq?: number; msg: string });
  await eventually(() => parsed().length === kept, 5_000, `the ${kept} kept lines to arrive`);
  const seqs = parsed().map((l) => l.seq!);
  // In order, none twice: the first lines up to where dropping began, then the lines written
  // once there was room again.
  expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  expect(new Set(seqs).size).toBe(kept);
  expect(seqs[0]).toBe(0);

  // The reader reads again: a new line arrives, and nothing more is dropped.
  logger.info({ seq: lines }, 'after');
  await eventually(() => parsed().some((l) => l.msg === 'after'), 5_000, 'the line written after the reader came back');
  expect(droppedLogLines() - before).toBe(dropped);
});
