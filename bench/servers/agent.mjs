// A small, fast workspace agent for the bench: GET /health, a small GET tool path, and an MCP
// server at POST /mcp (the SDK's, stateless, as the reference agent serves it, with one small
// tool), on keep-alive sockets kept open as long as the caller wants (the gate caches them).
//   node bench/servers/agent.mjs <port>      prints "listening <port>" when ready
import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';

const TOOL = JSON.stringify({ exitCode: 0, stdout: 'ok\n', stderr: '' });
const HEALTH = JSON.stringify({ status: 'ok' });

const validator = new AjvJsonSchemaValidator();

/** One stateless MCP exchange, a server and a transport per request. */
async function mcp(req, res) {
  const server = new McpServer({ name: 'bench-agent', version: '0.0.0' }, { jsonSchemaValidator: validator });
  server.registerTool('small', { description: 'a small, fast answer' }, async () => ({ content: [{ type: 'text', text: 'ok\n' }] }));
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.once('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res);
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  if (path.endsWith('/mcp') && req.method === 'POST') {
    mcp(req, res).catch(() => res.destroy());
    return;
  }
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
