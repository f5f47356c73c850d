// EXPLAIN ANALYZE of the gate's read (one pair, and a batch of 20) on 10 000 workspaces (3 builds each, 2 agents per
// start build), to check it is served by indexes.
//   npm run build && node bench/explain-gate-read.mjs   (BENCH_DATABASE_URL overrides the server)
import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
const { migrateUp } = await import(new URL('../dist/src/db/migrate.js', import.meta.url).href);
const serverUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const admin = new pg.Client({ connectionString: serverUrl });
await admin.connect();
await admin.query('drop database if exists agentgate_explain');
await admin.query('create database agentgate_explain');
const u = new URL(serverUrl);
u.pathname = '/agentgate_explain';
const url = u.toString();
const db = new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url }) }) });
await migrateUp(db);
await db.destroy();
const c = new pg.Client({ connectionString: url }); await c.connect();
await c.query(`insert into workspaces (id, owner_id, name) select gen_random_uuid(), gen_random_uuid(), 'w'||i from generate_series(1,10000) i`);
await c.query(`insert into workspace_builds (workspace_id, build_number, transition) select w.id, n, case when n = 3 then 'start' else (case when n=2 then 'stop' else 'start' end) end from workspaces w, generate_series(1,3) n`);
await c.query(`insert into workspace_agents (build_id, name, address, token_hash) select b.id, 'agent'||k, 'http://10.0.0.1:4000', sha256((b.id::text||k)::bytea) from workspace_builds b, generate_series(1,2) k where b.transition='start'`);
await c.query('analyze');
const { rows: ws } = await c.query('select id from workspaces offset 5000 limit 20');
const w = ws[0];
const text = (await import('fs')).readFileSync(new URL('../src/db/gate-read.ts', import.meta.url),'utf8').match(/const READ_CURRENT_AGENTS = `([\s\S]*?)`;/)[1];
await c.query(`prepare q(uuid[], text[]) as ${text}`);
const r = await c.query(`explain (analyze, buffers, costs off) execute q(array['${w.id}']::uuid[], array[null]::text[])`);
console.log(r.rows.map(x=>x['QUERY PLAN']).join('\n'));
const r2 = await c.query(`explain (analyze, costs off) execute q(array['${w.id}']::uuid[], array['agent2'])`);
console.log(r2.rows.map(x=>x['QUERY PLAN']).join('\n'));
console.log('--- a batch of 20');
const ids = ws.map((x) => `'${x.id}'`).join(',');
const r3 = await c.query(`explain (analyze, costs off) execute q(array[${ids}]::uuid[], array_fill(null::text, array[20]))`);
console.log(r3.rows.map(x=>x['QUERY PLAN']).join('\n'));
await c.end();
await admin.query('drop database agentgate_explain'); await admin.end();
