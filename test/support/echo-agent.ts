// A fake agent with tool-like routes for proxy tests: echo, slow streams, crashes and stalls.
// It records every request and whether each was aborted by the client (the gate).
import { createHash } from 'node:crypto';
import type http from 'node:http';
import { startAgent, type FakeAgent } from './agents.js';

export interface EchoRecord {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
  bodySha256: string;
  /** Set when the request's connection closed before the agent finished answering. */
  abortedAt?: number;
  receivedAt: number;
}

export interface EchoAgent extends FakeAgent {
  records: EchoRecord[];
  /** Resolves when a request to `path` was aborted by the gate. */
  waitAborted(path: string, timeoutMs?: number): Promise<EchoRecord>;
}

export async function startEchoAgent(): Promise<EchoAgent> {
  const agent = (await startAgent()) as EchoAgent;
  agent.records = [];
  agent.handle = (req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    const record: EchoRecord = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bodyBytes: 0, bodySha256: '', receivedAt: Date.now() };
    agent.records.push(record);
    res.on('close', () => {
      if (!res.writableFinished) record.abortedAt = Date.now();
    });
    const route = url.pathname.replace(/^\/base/, '');
    if (route === '/health') return false;
    if (route.startsWith('/echo') || route === '/') {
      const hash = createHash('sha256');
      req.on('data', (c: Buffer) => {
        record.bodyBytes += c.length;
        hash.update(c);
      });
      req.on('end', () => {
        record.bodySha256 = hash.digest('hex');
        res.writeHead(200, { 'content-type': 'application/json', 'x-agent-echo': 'yes', 'set-cookie': 'agent=1' });
        res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bodyBytes: record.bodyBytes, bodySha256: record.bodySha256 }));
      });
      return true;
    }
    if (route === '/status') {
      const code = Number(url.searchParams.get('code') ?? 200);
      res.writeHead(code, { 'content-type': 'text/plain', 'x-agent-status': String(code) });
      res.end(`status ${code}`);
      return true;
    }
    if (route === '/stream') {
      // Writes `n` chunks `gap` ms apart.
      const n = Number(url.searchParams.get('n') ?? 5);
      const gap = Number(url.searchParams.get('gap') ?? 100);
      res.writeHead(200, { 'content-type': 'text/plain' });
      let i = 0;
      const tick = () => {
        if (res.destroyed) return;
        res.write(`chunk ${i} ${Date.now()}\n`);
        i += 1;
        if (i < n) setTimeout(tick, gap);
        else res.end();
      };
      tick();
      return true;
    }
    if (route === '/hang') {
      // Reads the body, never answers.
      req.resume();
      return true;
    }
    if (route === '/crash-before') {
      req.socket.destroy();
      return true;
    }
    if (route === '/crash-after') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => req.socket.destroy(), 50);
      return true;
    }
    if (route === '/slow-upload') {
      // Reads the body slowly, answering only at its end.
      req.on('data', (c: Buffer) => {
        record.bodyBytes += c.length;
      });
      req.on('end', () => res.end('done'));
      return true;
    }
    return false;
  };
  agent.waitAborted = (path, timeoutMs = 2_000) =>
    new Promise((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      const check = () => {
        const r = agent.records.find((x) => x.url.includes(path) && x.abortedAt !== undefined);
        if (r) resolve(r);
        else if (Date.now() > deadline) reject(new Error(`no aborted request to ${path}`));
        else setTimeout(check, 5);
      };
      check();
    });
  return agent;
}
