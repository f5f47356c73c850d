// Processes a test started through an agent: whether one still runs, and its pid from the file
// the command wrote it to.
import { readFile } from 'node:fs/promises';
import { eventually } from './eventually.js';

/**
 * Whether a process still runs. A killed orphan can linger as a zombie until whatever adopted
 * it reaps it; a zombie runs nothing, so it counts as gone.
 */
export async function running(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false; // gone between the two checks
  }
}

export async function readPid(file: string): Promise<number> {
  let pid = NaN;
  await eventually(
    async () => {
      pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      return Number.isInteger(pid) && pid > 0;
    },
    5_000,
    `a pid in ${file}`,
  );
  return pid;
}

/** Kills (SIGKILL) whichever of `pids` still run, and empties the list: for an afterEach. */
export async function killSurvivors(pids: number[]): Promise<void> {
  for (const pid of pids.splice(0)) {
    if (!(await running(pid))) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
