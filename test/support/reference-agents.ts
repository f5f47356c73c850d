// Real reference agents (`agentgate agent`, compiled) as child processes, each with a root of
// its own holding a file that names it, killed with the test file.
import { mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';
import { freePort } from '../../src/db/embedded.js';
import { runCli, type CliProcess } from './process.js';

export interface ReferenceAgent {
  cli: CliProcess;
  url: string;
  port: number;
  root: string;
  /** Log lines (JSON) of the agent with `msg`. */
  lines(msg: string): Array<Record<string, unknown>>;
  /** SIGKILL: no goodbye. */
  kill(): Promise<void>;
  /** SIGTERM: the agent says goodbye, then exits. */
  stop(): Promise<void>;
}

export interface ReferenceAgents {
  /** A port for an agent's address before it is started. */
  port(): Promise<number>;
  start(options: { gate: string; token: string; port: number; name: string; heartbeatMs?: number }): Promise<ReferenceAgent>;
}

export function referenceAgents(): ReferenceAgents {
  const started: ReferenceAgent[] = [];
  const roots: string[] = [];
  afterAll(async () => {
    for (const agent of started) agent.cli.child.kill('SIGKILL');
    await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
  });
  return {
    port: () => freePort(),
    start: async ({ gate, token, port, name, heartbeatMs = 100 }) => {
      const root = await realpath(await mkdtemp(path.join(os.tmpdir(), 'agentgate-mcp-agent-')));
      roots.push(root);
      await writeFile(path.join(root, 'who.txt'), name);
      const cli = runCli(
        ['agent', '--gate', gate, '--token', token, '--listen', `127.0.0.1:${port}`, '--root', root, '--heartbeat-ms', String(heartbeatMs)],
        { LOG_LEVEL: 'info' },
      );
      const [, url] = await cli.waitFor(/agent listening on (http:\/\/\S+)/, 15_000);
      const exited = () => cli.child.exitCode !== null || cli.child.signalCode !== null;
      const agent: ReferenceAgent = {
        cli,
        url: url!,
        port,
        root,
        lines: (msg) =>
          cli
            .stdout()
            .split('\n')
            .filter((l) => l.includes(`"msg":"${msg}"`))
            .map((l) => JSON.parse(l) as Record<string, unknown>),
        kill: async () => {
          if (exited()) return;
          cli.child.kill('SIGKILL');
          await cli.exited;
        },
        stop: async () => {
          if (exited()) return;
          cli.child.kill('SIGTERM');
          await cli.exited;
        },
      };
      started.push(agent);
      return agent;
    },
  };
}
