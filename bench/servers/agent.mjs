// A small, fast workspace agent for the bench: GET /health and a small GET tool path, on
// keep-alive sockets kept open as long as the caller wants (the gate caches them).
//   node bench/servers/agent.mjs <port>      prints "listening <port>" when ready
import http from 'node:http';

const TOOL = JSON.stringify({ exitCode: 0, stdout: 'ok\n', stderr: '' });
const HEALTH = JSON.stringify({ status: 'ok' });

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  const body = path.endsWith('/health') ? HEALTH : path.endsWith('/tool/small') ? TOOL : undefined;
  if (body === undefined) {
    res.writeHead(404, { 'content-length': 0 }).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
});
// 0: an idle keep-alive socket is never closed by the agent.
server.keepAliveTimeout = 0;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
