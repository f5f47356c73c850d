// `npm run bench`: runs the bench scripts one after the other (never in parallel: they would
// measure each other), prints their tables and writes them to bench/results/latest.txt.
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';

const scripts = ['gate-latency.mjs', 'proxy-throughput.mjs'];
let report = `agentgate bench, ${new Date().toISOString()}, Node ${process.version}\n`;
process.stdout.write(report);

for (const script of scripts) {
  const header = `\n## ${script}\n`;
  process.stdout.write(header);
  report += header;
  const output = await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [new URL(script, import.meta.url).pathname], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (c) => {
      text += c;
      process.stdout.write(c);
    });
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`${script} exited with ${code}`))));
  });
  report += output;
}

const dir = new URL('results/', import.meta.url);
await mkdir(dir, { recursive: true });
await writeFile(new URL('latest.txt', dir), report);
process.stdout.write(`\nwritten to bench/results/latest.txt\n`);
