// The gate (SPEC section 5) and the agent connections it caches, decorated as `app.gate`; its
// connections close with the app.
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { Gate } from '../gate/gate.js';

declare module 'fastify' {
  interface FastifyInstance {
    gate: Gate;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const gate = new Gate({
      pool: app.database.pool,
      config,
      metrics: app.metrics,
      logger: app.log,
      signingKey: app.signingKey,
      tracing: app.tracing,
    });
    app.addHook('onClose', () => gate.close());
    app.decorate('gate', gate);
  },
  { name: 'agentgate-gate', dependencies: ['agentgate-database', 'agentgate-metrics', 'agentgate-signing-key', 'agentgate-tracing'] },
);
