// The work in flight (src/gate/in-flight.ts), decorated as `app.inFlight`: fed by every state
// transition (this replica's own at once, the others' notifications as hints to read) and by
// every connection the gate loses as a whole, read afresh after a resync and on its timer, and
// stopped with the app.
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { InFlight, watchIntervalMs } from '../gate/in-flight.js';
import { readAuthorities } from '../db/authority-read.js';

declare module 'fastify' {
  interface FastifyInstance {
    inFlight: InFlight;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const inFlight = new InFlight({
      read: (queries) => readAuthorities(app.db, queries),
      inactiveTimeoutMs: config.inactiveTimeoutMs,
      disconnectGraceMs: config.disconnectGraceMs,
      intervalMs: watchIntervalMs(config.inactiveTimeoutMs),
      log: app.log,
    });
    app.events.onEvent((event, origin) => {
      if (origin === 'local') inFlight.apply(event);
      else void inFlight.hint(event);
    });
    app.events.onResync(() => void inFlight.recheck());
    app.gate.onConnectionLost((target, reason) => inFlight.connectionLost(target.workspaceId, target.agentId, `the connection to the agent was lost: ${reason.message}`));
    inFlight.start();
    app.addHook('onClose', async () => inFlight.stop());
    app.decorate('inFlight', inFlight);
  },
  { name: 'agentgate-in-flight', dependencies: ['agentgate-database', 'agentgate-events', 'agentgate-gate'] },
);
