// Samples GET <url> every <interval> ms for <duration> ms on one keep-alive connection, one
// request at a time, and prints the latencies (ms, from the scheduled time) as JSON. A process of
// its own, so the load generator's event loop does not delay its timings.
//   node bench/servers/sampler.mjs <url> <intervalMs> <durationMs>
import { Pool } from 'undici';

const [url, intervalArg, durationArg] = process.argv.slice(2);
if (!url) throw new Error('usage: sampler.mjs <url> <intervalMs> <durationMs>');
const interval = Number(intervalArg ?? 10);
const duration = Number(durationArg ?? 1000);
const target = new URL(url);
const pool = new Pool(target.origin, { connections: 1, pipelining: 1 });
const latencies = [];
let failures = 0;
const start = performance.now();
for (let i = 0; ; i += 1) {
  const scheduled = start + i * interval;
  if (scheduled - start > duration) break;
  const wait = scheduled - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  try {
    const res = await pool.request({ method: 'GET', path: target.pathname });
    await res.body.dump();
    if (res.statusCode !== 200) failures += 1;
  } catch {
    failures += 1;
  }
  // From the scheduled time: a sample sent late because the previous one was slow counts late.
  latencies.push(performance.now() - scheduled);
}
await pool.close();
process.stdout.write(`${JSON.stringify({ latencies, failures })}\n`);
