// Load generators: closed loop (autocannon, N callers each sending its next request when the last
// is answered) and open loop (requests at fixed times whatever the answers, latency from the
// scheduled time, so a slow answer cannot hide the ones queued behind it).
import autocannon from 'autocannon';
import { Pool } from 'undici';
import { percentile } from './stats.mjs';

/**
 * `path()` gives each request's path (a uniform random workspace id, say). `expect` is the one
 * status every answer must have; any other, and any socket error, counts as unexpected.
 */
export async function closedLoop({ origin, method = 'POST', headers = {}, path, seconds, connections = 50, expect = 200 }) {
  const result = await autocannon({
    url: origin,
    connections,
    duration: seconds,
    headers,
    requests: [
      {
        method,
        setupRequest: (req) => {
          req.path = path();
          return req;
        },
      },
    ],
  });
  const statuses = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = count;
  const answered = Object.values(statuses).reduce((a, b) => a + b, 0);
  const expected = statuses[String(expect)] ?? 0;
  return {
    reqPerSec: expected / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: answered,
    statuses,
    unexpected: answered - expected + result.errors + result.timeouts,
  };
}

/** `rate` requests per second for `seconds` at `path()`, on a pool of `connections` sockets. */
export async function openLoop({ origin, method = 'GET', headers = {}, path, rate, seconds, connections = 64, expect = 200 }) {
  const pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
  const total = Math.max(1, Math.round(rate * seconds));
  const interval = 1000 / rate;
  const latencies = [];
  const sendLag = [];
  let unexpected = 0;
  const inflight = [];
  const fire = (scheduled) => {
    sendLag.push(performance.now() - scheduled);
    inflight.push(
      pool
        .request({ method, path: path(), headers })
        .then(async (res) => {
          await res.body.dump();
          if (res.statusCode !== expect) unexpected += 1;
          latencies.push(performance.now() - scheduled);
        })
        .catch(() => {
          unexpected += 1;
        }),
    );
  };
  const start = performance.now() + 5;
  await new Promise((resolve) => {
    let i = 0;
    const tick = () => {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        fire(start + i * interval);
        i += 1;
      }
      if (i < total) setTimeout(tick, Math.max(0, start + i * interval - performance.now()));
      else resolve();
    };
    tick();
  });
  await Promise.all(inflight);
  await pool.close();
  return {
    rate,
    requests: latencies.length,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: percentile(latencies, 100),
    sendLagP99: percentile(sendLag, 99),
    unexpected,
  };
}
