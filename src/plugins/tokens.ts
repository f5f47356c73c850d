// The token store (cached, hashed lookups), decorated as `app.tokens`, and the per-token caps on
// what one token has in flight, decorated as `app.concurrency` (one count for HTTP requests and
// WebSocket upgrades alike).
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { TokenStore } from '../auth/token-store.js';
import { TokenConcurrency } from '../auth/token-concurrency.js';

declare module 'fastify' {
  interface FastifyInstance {
    tokens: TokenStore;
    /** Per-token slots in use (read by diagnostics and tests). */
    concurrency: TokenConcurrency;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const { tokenLookups } = app.metrics;
    app.decorate(
      'tokens',
      new TokenStore({ db: app.database.db, adminToken: config.adminToken, onLookup: (source) => tokenLookups.inc({ source }) }),
    );
    app.decorate('concurrency', new TokenConcurrency({ requests: config.maxRequestsPerToken, websockets: config.maxWebSocketsPerToken }));
  },
  { name: 'agentgate-tokens', dependencies: ['agentgate-database', 'agentgate-metrics'] },
);
