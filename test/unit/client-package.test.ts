// `agentgate/client` as a chat server imports it: through the package's `exports`, from the
// compiled output (the test run compiles it first), loading nothing but the client and the shared
// catalogue: no Fastify, no pg, no package at all, no Node module.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

// Records every module the import resolves, from the loader hooks' thread.
const HOOKS = `
let port;
export function initialize(data) { port = data.port; }
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  port.postMessage(resolved.url);
  return resolved;
}`;

const CHILD = `
import { register } from 'node:module';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}), { data: { port: port2 }, transferList: [port2] });
const client = await import('agentgate/client');
const loaded = [];
for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) loaded.push(m.message);
port1.close();
process.stdout.write(JSON.stringify({ loaded, exports: Object.keys(client) }));
`;

describe('the agentgate/client package entry', () => {
  it('names compiled files that exist, types included', () => {
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
    const entry = pkg.exports['./client'];
    expect(Object.keys(entry)).toEqual(['types', 'import']);
    for (const file of Object.values<string>(entry)) expect(existsSync(path.join(root, file)), file).toBe(true);
    expect(pkg.bin.agentgate).toBe('dist/src/cli.js');
  });

  it('imports by its package name and loads only the client and the domain catalogue', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', CHILD], { cwd: root, encoding: 'utf8' });
    const { loaded, exports } = JSON.parse(out) as { loaded: string[]; exports: string[] };
    expect(exports).toEqual(expect.arrayContaining(['createClient', 'AgentgateClient', 'AgentgateError', 'AgentDisconnectedError', 'withRetry']));
    const allowed = ['dist/src/client/', 'dist/src/domain/'].map((dir) => pathToFileURL(path.join(root, dir)).href);
    const client = loaded.filter((url) => !url.startsWith('node:worker_threads') && !url.startsWith('node:module'));
    expect(client.length).toBeGreaterThan(3);
    expect(client.filter((url) => !allowed.some((dir) => url.startsWith(dir)))).toEqual([]);
  });
});
