// `agentgate agent`: the reference workspace agent. Serves its tools, heartbeats to the gate,
// and says goodbye on SIGTERM/SIGINT before exiting.
import { mkdir, realpath } from 'node:fs/promises';
import type { Logger } from 'pino';
import { buildAgentApp } from './agent-app.js';
import { HeartbeatLoop } from './heartbeat.js';
import { GateKeyRing } from './gate-keys.js';
import { killAllProcesses } from './run-process.js';

export interface AgentOptions {
  gate: string;
  token: string;
  host: string;
  port: number;
  root: string;
  heartbeatMs: number;
  logger: Logger;
}

export interface RunningAgent {
  url: string;
  heartbeats: HeartbeatLoop;
  keys: GateKeyRing;
  /** Stops serving; says goodbye to the gate unless told not to. */
  close(sayGoodbye?: boolean): Promise<void>;
}

/** Parses `host:port` (IPv6 in brackets); throws with a message naming the flag. */
export function parseListen(value: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new Error(`--listen must be host:port (got "${value}")`);
  }
  return { host: match[1] ?? match[2] ?? '', port };
}

export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  await mkdir(options.root, { recursive: true });
  const root = await realpath(options.root);
  // Fetched at once but not awaited: a gate that is down must not keep the agent from serving;
  // the first signed request joins this fetch or starts the next (failures are logged).
  const keys = new GateKeyRing({ gate: options.gate, token: options.token, logger: options.logger });
  void keys.refresh();
  const app = await buildAgentApp({ keys, root, logger: options.logger });
  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const heartbeats = new HeartbeatLoop({ gate: options.gate, token: options.token, intervalMs: options.heartbeatMs, logger: options.logger });
  heartbeats.start();
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    heartbeats,
    keys,
    close: (sayGoodbye = true) =>
      (closing ??= (async () => {
        // Goodbye first: the gate stops sending calls at once instead of after a timeout.
        await heartbeats.stop(sayGoodbye);
        // Commands still running would outlive us (they run in process groups of their own).
        killAllProcesses();
        await app.close();
      })()),
  };
}
