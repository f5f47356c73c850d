// The MCP front door against a hostile agent, fuzzed: the gate runs as its own process
// (`agentgate serve`), and the agent at its workspace's address is scripted
// (test/support/hostile-mcp-agent.ts) to send what a tenant who controls it could: huge lines,
// trickles, endless streams, invalid JSON, responses to ids that match nothing, requests of its
// own to the client, answers too large or too deep. fast-check draws rounds of concurrent calls,
// single and batched, from callers who read, who leave early, or who never read. Meanwhile the
// gate's /healthz is timed, and its CPU (from /proc) and heap (from its /metrics) are sampled:
// every call ends within its bound, /healthz stays fast and the heap stays flat. FC_SEED replays
// a draw; FUZZ_ROUNDS=<n> runs longer (12 rounds by default).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, parseBody } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { AgentRows, createWorkspace, type Caller, type Workspace } from '../support/gate-fixtures.js';
import { HOSTILE_TOOLS, startHostileAgent, type HostileAgent, type HostileTool } from '../support/hostile-mcp-agent.js';
import { runCli, type CliProcess } from '../support/process.js';

const CALL_TIMEOUT_MS = 1_500;
const BODY_LIMIT = 4 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 1_000;
/** What a call may take past its bound before it counts as hung. */
const SLACK_MS = 2_500;
const ROUNDS = Number(process.env.FUZZ_ROUNDS ?? 12);
/** How long a caller that never reads holds its socket without reading. */
const NEVER_READS_MS = CALL_TIMEOUT_MS + REQUEST_TIMEOUT_MS + 500;

let database: TestDatabase;
let agent: HostileAgent;
let gate: CliProcess;
let base = '';
let ws: Workspace;
let beat: NodeJS.Timeout;

beforeAll(async () => {
  database = await createTestDatabase();
  agent = await startHostileAgent();
  gate = runCli(['serve'], {
    DATABASE_URL: database.url,
    PORT: '0',
    AGENTGATE_ADMIN_TOKEN: ENV_ADMIN_TOKEN,
    AGENTGATE_MCP_CALL_TIMEOUT_MS: String(CALL_TIMEOUT_MS),
    AGENTGATE_BODY_LIMIT_BYTES: String(BODY_LIMIT),
    AGENTGATE_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    LOG_LEVEL: 'warn',
  });
  [, base = ''] = await gate.waitFor(/listening on (http:\/\/\S+)/);
  const caller: Caller = {
    call: async (method, path, options = {}) => {
      const res = await fetch(base + path, {
        method,
        headers: { authorization: `Bearer ${options.token ?? ENV_ADMIN_TOKEN}`, ...(options.body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
      });
      const text = await res.text();
      return { status: res.status, headers: res.headers, text, body: parseBody(text) };
    },
  };
  ws = await createWorkspace(caller, [{ name: 'main', address: agent.address }]);
  const rows = await AgentRows.open(database.url);
  await rows.heartbeat(ws.agents[0]!.id);
  beat = setInterval(() => void rows.heartbeat(ws.agents[0]!.id).catch(() => undefined), 2_000);
  beat.unref();
  closers.push(() => rows.close());
}, 60_000);

const closers: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  clearInterval(beat);
  if (gate && gate.child.exitCode === null) {
    gate.child.kill('SIGKILL');
    await gate.exited;
  }
  for (const close of closers.splice(0)) await close();
  await agent?.close();
  await database?.drop();
});

type Reader = 'reads' | 'leaves early' | 'never reads';

interface Call {
  tool: HostileTool;
  args: Record<string, unknown>;
}

const args = (tool: HostileTool): fc.Arbitrary<Record<string, unknown>> => {
  switch (tool) {
    case 'huge-line':
      return fc.record({ bytes: fc.constantFrom(64 * 1024, BODY_LIMIT - 1024, BODY_LIMIT + 64 * 1024), chunk: fc.constantFrom(1, 512, 4096, 65_536), everyMs: fc.constantFrom(1, 2, 5) });
    case 'big':
      return fc.record({ bytes: fc.constantFrom(1024, 1024 * 1024, BODY_LIMIT + 1), sse: fc.boolean() });
    case 'deep':
      return fc.record({ depth: fc.constantFrom(10, 65, 100_000) });
    case 'echo':
      return fc.record({ ms: fc.constantFrom(0, 50) });
    default:
      return fc.record({ everyMs: fc.constantFrom(1, 5, 20), bytes: fc.constantFrom(16, 4096) });
  }
};
const call: fc.Arbitrary<Call> = fc.constantFrom(...HOSTILE_TOOLS).chain((tool) => args(tool).map((a) => ({ tool, args: a })));
const request = fc.record({
  calls: fc.array(call, { minLength: 1, maxLength: 6 }),
  batched: fc.boolean(),
  reader: fc.constantFrom<Reader>('reads', 'reads', 'leaves early', 'never reads'),
});
const round = fc.array(request, { minLength: 1, maxLength: 4 });

/**
 * Sends one POST over a raw socket (so that a caller can stop reading) and resolves with how long
 * it took to end, one way or the other.
 */
function send(req: { calls: Call[]; batched: boolean; reader: Reader }): Promise<{ ms: number; ended: string }> {
  const messages = req.calls.map((c, i) => ({
    jsonrpc: '2.0',
    id: i + 1,
    method: 'tools/call',
    params: { name: c.tool, arguments: c.args, _meta: { progressToken: `p${i}` } },
  }));
  const payload = JSON.stringify(req.batched ? messages : messages[0]);
  const url = new URL(base);
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = net.connect(Number(url.port), url.hostname);
    let settled = false;
    const done = (ended: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(leave);
      socket.destroy();
      resolve({ ms: performance.now() - started, ended });
    };
    socket.on('error', () => done('error'));
    socket.on('close', () => done('closed'));
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      // A chunked response ends with its last chunk.
      if (text.endsWith('\r\n0\r\n\r\n')) done('answered');
    });
    // One that never reads holds its socket paused past every bound the gate has, then looks at
    // what the gate did meanwhile (a paused socket sees neither data nor its own close).
    if (req.reader === 'never reads') {
      socket.pause();
      setTimeout(() => socket.resume(), NEVER_READS_MS).unref();
    }
    const leave = setTimeout(() => done('left'), req.reader === 'leaves early' ? 100 : 60_000);
    socket.write(
      `POST /workspaces/${ws.id}/mcp HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${ENV_ADMIN_TOKEN}\r\n` +
        `content-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`,
    );
  });
}

const cpuSeconds = () => {
  const fields = readFileSync(`/proc/${gate.child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
const heapMB = async () => {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^nodejs_heap_size_used_bytes (\S+)$/m.exec(text)?.[1] ?? Number.NaN) / 1e6;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))] ?? Number.NaN;

it('a fuzzed hostile agent costs the gate bounded time, CPU and memory: every call ends, /healthz stays fast, the heap stays flat', { timeout: 180_000 }, async () => {
  const health: number[] = [];
  const heap: number[] = [];
  const cpu: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    let next = performance.now();
    let lastCpu = cpuSeconds();
    let lastAt = performance.now();
    while (sampling) {
      const t0 = performance.now();
      const ok = await fetch(`${base}/healthz`).then(
        (r) => r.text().then(() => r.ok),
        () => false,
      );
      health.push(ok ? performance.now() - t0 : Number.POSITIVE_INFINITY);
      if (performance.now() >= next) {
        next += 500;
        heap.push(await heapMB());
        const now = cpuSeconds();
        cpu.push((now - lastCpu) / ((performance.now() - lastAt) / 1000));
        lastCpu = now;
        lastAt = performance.now();
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();

  const outcomes = new Map<string, number>();
  let worstMs = 0;
  let calls = 0;
  try {
    await fc.assert(
      fc.asyncProperty(round, async (requests) => {
        const ended = await Promise.all(requests.map(send));
        for (const [i, e] of ended.entries()) {
          calls += requests[i]!.calls.length;
          outcomes.set(`${requests[i]!.reader}: ${e.ended}`, (outcomes.get(`${requests[i]!.reader}: ${e.ended}`) ?? 0) + 1);
          worstMs = Math.max(worstMs, e.ms);
          // A batch runs its calls four at a time: its bound is its calls' bounds in turn. A caller
          // that never reads is cut off after the drain bound, or has its answers waiting.
          const turns = Math.ceil(requests[i]!.calls.length / 4);
          const bound = requests[i]!.reader === 'never reads' ? NEVER_READS_MS + SLACK_MS : turns * CALL_TIMEOUT_MS + REQUEST_TIMEOUT_MS + SLACK_MS;
          expect(e.ms, JSON.stringify(requests[i])).toBeLessThan(bound);
          if (requests[i]!.reader === 'reads') expect(e.ended, JSON.stringify(requests[i])).toBe('answered');
        }
      }),
      { numRuns: ROUNDS, endOnFailure: true },
    );
    // What the gate does after its callers left: nothing much.
    await new Promise((r) => setTimeout(r, 1_500));
  } finally {
    sampling = false;
    await sampler;
  }

  const third = Math.max(1, Math.floor(heap.length / 3));
  const early = median(heap.slice(0, third));
  const late = median(heap.slice(-third));
  process.stdout.write(
    `\nHostile MCP agent, fuzzed (${ROUNDS} rounds, ${calls} calls, worst call ${Math.round(worstMs)} ms)\n` +
      `| measure | value |\n|---|---:|\n` +
      `| /healthz p50 / p99 / max ms | ${pct(health, 0.5).toFixed(1)} / ${pct(health, 0.99).toFixed(1)} / ${Math.max(...health).toFixed(1)} |\n` +
      `| gate CPU, cores: median / max | ${median(cpu).toFixed(2)} / ${Math.max(...cpu).toFixed(2)} |\n` +
      `| gate heap MB: first third / last third (medians) / max | ${early.toFixed(0)} / ${late.toFixed(0)} / ${Math.max(...heap).toFixed(0)} |\n` +
      `| outcomes | ${[...outcomes].map(([k, v]) => `${k} x${v}`).join(', ')} |\n`,
  );
  // Bounds that a pinned loop (seconds) or a growing heap (every answer kept) cannot meet, far
  // above what a busy machine adds.
  expect(pct(health, 0.99)).toBeLessThan(500);
  expect(Math.max(...health)).toBeLessThan(1_500);
  expect(late).toBeLessThan(early * 1.5 + 64);
  expect(Math.max(...heap)).toBeLessThan(400);
  // The agent's requests all ended: nothing left running for callers who left.
  expect(agent.running()).toBe(0);
});
