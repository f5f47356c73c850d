// The proxy baseline of contract §10: a bare @fastify/reply-from proxy in front of the agent, with
// agentgate's URL shape (/workspaces/:id/conn/<path> → <agent>/<path>) and no gate read.
//   node bench/servers/reply-from.mjs <agent url> <port>
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const base = process.argv[2];
if (!base) throw new Error('usage: reply-from.mjs <agent url> <port>');
const app = Fastify({ logger: false });
await app.register(replyFrom, {
  base,
  undici: { connections: 128, pipelining: 1, keepAliveTimeout: 300_000, keepAliveMaxTimeout: 300_000 },
});
app.get('/workspaces/:id/conn/*', (request, reply) => reply.from(`/${request.params['*']}`));
app.get('/healthz', async () => ({ status: 'ok' }));
await app.listen({ host: '127.0.0.1', port: Number(process.argv[3] ?? 0) });
process.stdout.write(`listening ${app.server.address().port}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
