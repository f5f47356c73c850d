// The database baseline of contract §10: a bare Fastify route doing one primary-key read per request
// on a pg pool of agentgate's size (10), as a prepared (named) statement or a plain query.
//   DATABASE_URL=... node bench/servers/db-baseline.mjs prepared|plain <port>
import Fastify from 'fastify';
import pg from 'pg';

const mode = process.argv[2];
if (mode !== 'prepared' && mode !== 'plain') throw new Error('usage: db-baseline.mjs prepared|plain <port>');
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const TEXT = 'select id, owner_id, name from workspaces where id = $1 and deleted_at is null';

const app = Fastify({ logger: false });
app.post('/workspaces/:id/conn', async (request, reply) => {
  const values = [request.params.id];
  const { rows } = await pool.query(mode === 'prepared' ? { name: 'bench_pk_read', text: TEXT, values } : { text: TEXT, values });
  if (rows.length === 0) return reply.code(404).send({ code: 'WORKSPACE_NOT_FOUND' });
  return rows[0];
});
app.get('/healthz', async () => ({ status: 'ok' }));
await app.listen({ host: '127.0.0.1', port: Number(process.argv[3] ?? 0) });
process.stdout.write(`listening ${app.server.address().port}\n`);
process.on('SIGTERM', () => void app.close().then(() => pool.end()).then(() => process.exit(0)));
