// `npm run demo` runs to completion, tells its story in order (its MCP act included), and cleans
// up after itself.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect, it } from 'vitest';

const DEMO = path.resolve(import.meta.dirname, '../../dist/src/demo.js');

it('runs the demo to completion', { timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, [DEMO], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  expect(err, out).toBe('');
  expect(code).toBe(0);
  const expected = [
    /POST \/conn -> 200 main connected, dialed in \d+ ms/,
    /POST \/conn -> 200 main connected, cached connection/,
    /POST \/conn\/exec -> 200 .*exit 0, stdout "hello from /,
    /after the kill -> 502 AGENT_UNREACHABLE \(agentStatus=disconnected/,
    /after the kill -> 409 AGENT_DISCONNECTED/,
    /POST \/conn -> 200 main connected, dialed in \d+ ms .*agent id is the new one/,
    /agent exited with code 0/,
    /POST \/conn -> 409 AGENT_DISCONNECTED/,
    /POST \/conn -> 409 WORKSPACE_HAS_NO_AGENT/,
    /initialize -> agentgate \(answered by agentgate itself\)/,
    /tools\/list -> exec, read_file, write_file, list_directory/,
    /progress after \d+ ms: "step 1 of 3\\n"/,
    /tools\/call exec -> isError false, exit 0/,
    /tools\/call right after the kill -> isError true; the model reads:/,
    /tools\/call past the grace -> isError true; the model reads:\s+The workspace agent is disconnected[^\n]*\n\s+AGENT_DISCONNECTED: [^\n]*\n\s+_meta\["agentgate\/error"\] = \{"code":"AGENT_DISCONNECTED"/,
    /tools\/list -> 4 tools, _meta\["agentgate\/stale"\] = true/,
    /everything cleaned up/,
  ];
  let from = 0;
  for (const pattern of expected) {
    const match = pattern.exec(out.slice(from));
    expect(match, `${String(pattern)} after offset ${from} in:\n${out}`).not.toBeNull();
    from += (match?.index ?? 0) + (match?.[0].length ?? 0);
  }
});
