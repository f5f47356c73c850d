// Polling for a condition, bounded: how tests wait for something to happen (an agent to
// connect, a row to change, a socket to close) instead of sleeping and hoping it did.
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Resolves as soon as `check` holds; throws naming `what` if it still does not after
 * `timeoutMs`. The check runs again after every wait, the last one included, so a machine that
 * wakes late does not fail a condition that holds by then.
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what = 'condition',
  everyMs = 10,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}
