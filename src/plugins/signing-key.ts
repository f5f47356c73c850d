// This process's Ed25519 signing key (contract §4.1), published before the app serves (an agent asks
// for the keys as soon as the gate answers) and withdrawn on close, after the app has drained:
// its last requests to agents are signed with it.
import fp from 'fastify-plugin';
import { GateSigningKey } from '../auth/gate-signing-key.js';
import { KeyPublisher } from '../auth/key-publisher.js';

declare module 'fastify' {
  interface FastifyInstance {
    signingKey: GateSigningKey;
    keyPublisher: KeyPublisher;
  }
}

export interface SigningKeyPluginOptions {
  /** How long a published key stays valid, and how often it is refreshed (tests shorten both). */
  lifetimeMs?: number | undefined;
  refreshMs?: number | undefined;
}

export default fp<SigningKeyPluginOptions>(
  async (app, options) => {
    const key = GateSigningKey.generate();
    const publisher = new KeyPublisher({
      db: app.database.db,
      key,
      logger: app.log,
      lifetimeMs: options.lifetimeMs,
      refreshMs: options.refreshMs,
    });
    await publisher.start();
    app.addHook('onClose', () => publisher.stop());
    app.decorate('signingKey', key);
    app.decorate('keyPublisher', publisher);
  },
  { name: 'agentgate-signing-key', dependencies: ['agentgate-database'] },
);
