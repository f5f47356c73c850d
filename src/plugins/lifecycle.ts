// Process-wide serving state, decorated as `app.lifecycle`: `serve` starts draining on SIGTERM,
// readiness and admission read it.
import fp from 'fastify-plugin';
import { Lifecycle } from '../lifecycle.js';

declare module 'fastify' {
  interface FastifyInstance {
    lifecycle: Lifecycle;
  }
}

export default fp(
  async (app) => {
    app.decorate('lifecycle', new Lifecycle());
  },
  { name: 'agentgate-lifecycle' },
);
