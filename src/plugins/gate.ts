// The gate (contract §5) and the agent connections it caches, decorated as `app.gate`: its rows
// read from the database (batched), its agents reached by dialing their address, and its
// connections closed with the app.
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { Gate } from '../gate/gate.js';
import type { Clock } from '../gate/failed-dials.js';
import { CurrentAgentReads, readCurrentAgent } from '../db/gate-read.js';
import { HttpTransport } from '../transport/http/dial.js';
import { connectionPolicy } from '../transport/http/connection.js';

declare module 'fastify' {
  interface FastifyInstance {
    gate: Gate;
  }
}

export default fp<{ config: Config; clock?: Clock | undefined }>(
  async (app, { config, clock }) => {
    const pool = app.database.pool;
    const batched = new CurrentAgentReads(pool);
    const gate = new Gate({
      reads: {
        minBudgetMs: pool.minBudgetMs,
        read: (workspaceId, agentName, budgetMs, span) => batched.read(workspaceId, agentName, budgetMs, span),
        recheck: (workspaceId, agentName, budgetMs) => readCurrentAgent(pool, workspaceId, agentName, budgetMs),
      },
      transport: new HttpTransport(connectionPolicy(config), app.signingKey),
      config,
      metrics: app.metrics,
      logger: app.log,
      tracing: app.tracing,
      clock,
    });
    app.addHook('onClose', () => gate.close());
    app.decorate('gate', gate);
  },
  { name: 'agentgate-gate', dependencies: ['agentgate-database', 'agentgate-metrics', 'agentgate-signing-key', 'agentgate-tracing'] },
);
