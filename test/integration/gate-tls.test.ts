// TLS to https: agents is verified: a self-signed certificate is refused, and the same agent is
// accepted once its certificate is trusted (NODE_EXTRA_CA_CERTS, read at process start).
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { AgentRows, createWorkspace } from '../support/gate-fixtures.js';
import { runCli } from '../support/process.js';

let dir: string;
let server: https.Server;
let address: string;
let requests = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'agentgate-tls-'));
  // A self-signed certificate for 127.0.0.1, made fresh for this run.
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
  server = https.createServer(
    { key: await readFile(path.join(dir, 'key.pem')), cert: await readFile(path.join(dir, 'cert.pem')) },
    (_req, res) => {
      requests += 1;
      res.writeHead(200).end('{"status":"ok"}');
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  address = `https://127.0.0.1:${port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

it('refuses an agent whose certificate is not trusted, without sending it a request', async () => {
  const t: TestApp = await startTestApp();
  const rows = await AgentRows.open(t.database.url);
  try {
    const ws = await createWorkspace(t, [{ address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    const r = await t.call('POST', `/workspaces/${ws.id}/conn`, { token: ENV_ADMIN_TOKEN });
    expect(r.status).toBe(502);
    expect(r.body).toMatchObject({ code: 'AGENT_UNREACHABLE' });
    expect(r.body.detail).toMatch(/certificate/);
    expect(requests).toBe(0);
  } finally {
    await rows.close();
    await t.close();
  }
});

it('accepts the same agent once its certificate is trusted', async () => {
  const database: TestDatabase = await createTestDatabase();
  const cli = runCli(['serve'], {
    DATABASE_URL: database.url,
    PORT: '0',
    AGENTGATE_ADMIN_TOKEN: ENV_ADMIN_TOKEN,
    LOG_LEVEL: 'warn',
    NODE_EXTRA_CA_CERTS: path.join(dir, 'cert.pem'),
  });
  const rows = await AgentRows.open(database.url);
  try {
    const [, base] = await cli.waitFor(/listening on (http:\/\/\S+)/);
    const client = { call: (method: string, p: string, o: { body?: unknown } = {}) => callJson(base!, method, p, o.body) };
    const ws = await createWorkspace(client, [{ address }]);
    await rows.heartbeat(ws.agents[0]!.id);
    const r = await callJson(base!, 'POST', `/workspaces/${ws.id}/conn`);
    expect(r.status).toBe(200);
    expect(requests).toBe(1);
  } finally {
    cli.child.kill('SIGTERM');
    await cli.exited;
    await rows.close();
    await database.drop();
  }
});

async function callJson(base: string, method: string, p: string, body?: unknown) {
  const res = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${ENV_ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: text ? JSON.parse(text) : undefined };
}
