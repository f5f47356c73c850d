// The token store (cached, hashed lookups), decorated as `app.tokens`.
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { TokenStore } from '../auth/token-store.js';

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenStore;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const { tokenLookups } = app.metrics;
    app.decorate(
      'tokens',
      new TokenStore({ db: app.database.db, adminToken: config.adminToken, onLookup: (source) => tokenLookups.inc({ source }) }),
    );
  },
  { name: 'agentgate-tokens', dependencies: ['agentgate-database', 'agentgate-metrics'] },
);
