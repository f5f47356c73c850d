// `npm run demo`: agentgate on a fresh embedded database, real reference agents as child
// processes, and a scripted chat server, narrating what the gate answers and how fast; then an
// MCP client on the workspace's MCP endpoint, before and after its agent dies.
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument --
   why: the demo prints fields of our own API's JSON answers; typing each shape here adds nothing. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';
import { freePort } from './db/embedded.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cli.js');
const ADMIN = `demo-admin-${randomUUID()}`;
const t0 = performance.now();

function say(line: string): void {
  const at = ((performance.now() - t0) / 1000).toFixed(2).padStart(6);
  process.stdout.write(`[${at}s] ${line}\n`);
}

function heading(line: string): void {
  process.stdout.write(`\n== ${line}\n`);
}

interface Answer {
  status: number;
  ms: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any; // why: the demo prints fields of several response shapes
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-demo-'));
  // mkdtemp makes it private; the embedded PostgreSQL may run as another user (as root).
  await chmod(dir, 0o755);
  const children: ChildProcess[] = [];
  // Short timings so the story fits in seconds: silence is a weak signal after 1.5 s and a
  // strong one after 4 s (the defaults are 30 s and 90 s).
  const config = loadConfig({
    AGENTGATE_DATA_DIR: path.join(dir, 'data'),
    PORT: '0',
    AGENTGATE_ADMIN_TOKEN: ADMIN,
    LOG_LEVEL: 'silent',
    AGENTGATE_INACTIVE_TIMEOUT_MS: '1500',
    AGENTGATE_DISCONNECT_GRACE_MS: '4000',
    AGENTGATE_DIAL_TIMEOUT_MS: '2000',
    AGENTGATE_DIAL_BACKOFF_MS: '1000',
    AGENTGATE_SHUTDOWN_GRACE_MS: '2000',
  });
  heading('agentgate on a fresh embedded PostgreSQL');
  const server = await startServer(config, createLogger('silent'));
  say(`agentgate listening on ${server.url}`);

  const call = async (method: string, route: string, body?: unknown): Promise<Answer> => {
    const started = performance.now();
    const res = await fetch(server.url + route, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, ms: Math.round(performance.now() - started), body: parsed };
  };

  const describe = (a: Answer): string => {
    if (a.status === 200 && a.body?.connection) {
      const c = a.body.connection;
      return `200 ${a.body.agent.name} ${a.body.agent.status}, ${c.cached ? 'cached connection' : `dialed in ${c.dialMs} ms`} (${a.ms} ms)`;
    }
    const b = a.body ?? {};
    const extra = [b.agentStatus && `agentStatus=${b.agentStatus}`, b.disconnectedSeconds !== undefined && `disconnected ${b.disconnectedSeconds}s`]
      .filter(Boolean)
      .join(', ');
    return `${a.status} ${b.code ?? ''}${extra ? ` (${extra})` : ''} in ${a.ms} ms${b.hint ? `\n           hint: ${b.hint}` : ''}`;
  };

  const startAgentProcess = async (token: string, port: number, name: string): Promise<ChildProcess> => {
    const child = spawn(
      process.execPath,
      [CLI, 'agent', '--gate', server.url, '--token', token, '--listen', `127.0.0.1:${port}`, '--root', dir, '--heartbeat-ms', '500'],
      { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, LOG_LEVEL: 'silent' } },
    );
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('agent listening')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`agent ${name} exited early (${code})`)));
    });
    say(`reference agent "${name}" (pid ${child.pid}) listening on 127.0.0.1:${port}, heartbeating every 500 ms`);
    return child;
  };

  const waitExit = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  try {
    const workspaceId = randomUUID();
    const conn = () => call('POST', `/workspaces/${workspaceId}/conn`);
    await call('PUT', `/workspaces/${workspaceId}`, { ownerId: randomUUID(), name: 'demo' });

    heading('1. A healthy agent: the first call dials, the next one reuses the connection');
    const portA = await freePort();
    const build1 = await call('POST', `/workspaces/${workspaceId}/builds`, {
      transition: 'start',
      agents: [{ name: 'main', address: `http://127.0.0.1:${portA}` }],
    });
    say(`workspace ${workspaceId}: build ${build1.body.build.buildNumber} with agent "main"`);
    const agentA = await startAgentProcess(build1.body.agents[0].token, portA, 'main');
    await sleep(300);
    say(`POST /conn -> ${describe(await conn())}`);
    say(`POST /conn -> ${describe(await conn())}`);

    heading('2. A tool call through the gate (proxied to the agent, signed)');
    const exec = await call('POST', `/workspaces/${workspaceId}/conn/exec`, {
      command: process.execPath,
      args: ['-e', 'console.log(`hello from ${require("os").hostname()}, node ${process.version}`)'],
    });
    say(`POST /conn/exec -> ${exec.status} in ${exec.ms} ms: exit ${exec.body.exitCode}, stdout ${JSON.stringify(exec.body.stdout)}`);

    heading('3. The agent dies without a goodbye (SIGKILL): weak signal, then strong');
    agentA.kill('SIGKILL');
    await waitExit(agentA);
    const killedAt = performance.now();
    say('agent "main" killed');
    const seen = new Set<string>();
    while (performance.now() - killedAt < 6_000) {
      const a = await conn();
      const key = `${a.status} ${a.body?.code ?? ''} ${a.body?.agent?.status ?? a.body?.agentStatus ?? ''}`;
      if (!seen.has(key)) {
        seen.add(key);
        say(`POST /conn, ${((performance.now() - killedAt) / 1000).toFixed(1)} s after the kill -> ${describe(a)}`);
      }
      if (a.body?.code === 'AGENT_DISCONNECTED') break;
      await sleep(250);
    }

    heading('4. The workspace is rebuilt: the next call picks up the new agent');
    const portB = await freePort();
    const build2 = await call('POST', `/workspaces/${workspaceId}/builds`, {
      transition: 'start',
      agents: [{ name: 'main', address: `http://127.0.0.1:${portB}` }],
    });
    say(`build ${build2.body.build.buildNumber} with a new agent "main"`);
    const agentB = await startAgentProcess(build2.body.agents[0].token, portB, 'main (build 2)');
    await sleep(300);
    const afterRebuild = await conn();
    say(`POST /conn -> ${describe(afterRebuild)}; agent id ${afterRebuild.body?.agent?.id === build2.body.agents[0].id ? 'is the new one' : 'is NOT the new one'}`);

    heading('5. A graceful stop (SIGTERM): the agent says goodbye, the gate answers at once');
    agentB.kill('SIGTERM');
    await waitExit(agentB);
    say(`agent exited with code ${agentB.exitCode}`);
    say(`POST /conn -> ${describe(await conn())}`);

    heading('6. The workspace is stopped: nothing to connect to');
    const stop = await call('POST', `/workspaces/${workspaceId}/builds`, { transition: 'stop' });
    say(`build ${stop.body.build.buildNumber}: stop`);
    say(`POST /conn -> ${describe(await conn())}`);

    heading('7. MCP: an LLM client on /workspaces/:id/mcp, and what the model reads when the agent dies');
    const mcpWorkspace = randomUUID();
    await call('PUT', `/workspaces/${mcpWorkspace}`, { ownerId: randomUUID(), name: 'mcp' });
    const portC = await freePort();
    const build3 = await call('POST', `/workspaces/${mcpWorkspace}/builds`, {
      transition: 'start',
      agents: [{ name: 'main', address: `http://127.0.0.1:${portC}` }],
    });
    const agentC = await startAgentProcess(build3.body.agents[0].token, portC, 'main (MCP)');
    await sleep(300);
    const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/workspaces/${mcpWorkspace}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${ADMIN}` } },
    });
    const mcp = new Client({ name: 'demo-chat-server', version: '1.0.0' });
    await mcp.connect(transport);
    say(`initialize -> ${mcp.getServerVersion()?.name ?? '?'} (answered by agentgate itself), capabilities ${JSON.stringify(mcp.getServerCapabilities())}`);
    const listed = await mcp.listTools();
    say(`tools/list -> ${listed.tools.map((tool) => tool.name).join(', ')} (the agent's own list, through the gate)`);
    const script = 'for (let i = 1; i <= 3; i++) setTimeout(() => console.log(`step ${i} of 3`), i * 300)';
    const started = performance.now();
    const streamed = await mcp.callTool({ name: 'exec', arguments: { command: process.execPath, args: ['-e', script] } }, undefined, {
      onprogress: (p) => say(`  progress after ${Math.round(performance.now() - started)} ms: ${JSON.stringify(p.message ?? '')}`),
    });
    say(`tools/call exec -> isError ${String(streamed.isError)}, exit ${(streamed.structuredContent as { exitCode?: number } | undefined)?.exitCode}`);
    agentC.kill('SIGKILL');
    await waitExit(agentC);
    say('agent killed (SIGKILL, no goodbye)');
    const readModel = (result: { content?: unknown; _meta?: Record<string, unknown> }) => {
      const text = ((result.content ?? []) as Array<{ text?: string }>).map((c) => c.text ?? '').join('\n');
      return `${text.replaceAll('\n', '\n           ')}\n           _meta["agentgate/error"] = ${JSON.stringify(result._meta?.['agentgate/error'])}`;
    };
    const first = await mcp.callTool({ name: 'exec', arguments: { command: 'true' } });
    say(`tools/call right after the kill -> isError ${String(first.isError)}; the model reads:\n           ${readModel(first)}`);
    const killedMcpAt = performance.now();
    for (;;) {
      const again = await mcp.callTool({ name: 'exec', arguments: { command: 'true' } });
      const code = (again._meta?.['agentgate/error'] as { code?: string } | undefined)?.code;
      if (code === 'AGENT_DISCONNECTED' || performance.now() - killedMcpAt > 8_000) {
        say(`tools/call past the grace -> isError ${String(again.isError)}; the model reads:\n           ${readModel(again)}`);
        break;
      }
      await sleep(250);
    }
    const stale = await mcp.listTools();
    say(`tools/list -> ${stale.tools.length} tools, _meta["agentgate/stale"] = ${String(stale._meta?.['agentgate/stale'])}: the model can still call one and read why it cannot run`);
    await mcp.close();
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
  heading(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s; everything cleaned up`);
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
