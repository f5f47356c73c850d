// State transitions from this replica and, through LISTEN/NOTIFY, from the others, delivered to
// the caches that depend on them (tokens, the gate's connections). Decorated as `app.events`;
// the listener closes before the gate and the database.
import fp from 'fastify-plugin';
import type { FastifyBaseLogger } from 'fastify';
import { EventListener } from '../db/events.js';
import { EventHub } from '../event-hub.js';
import type { TokenStore } from '../auth/token-store.js';
import type { Gate } from '../gate/gate.js';

declare module 'fastify' {
  interface FastifyInstance {
    events: EventHub;
    eventListener: EventListener;
  }
}

export interface EventsRuntime {
  hub: EventHub;
  listener: EventListener;
}

/** Listens on `url` and applies every transition to the token store and the gate. */
export function startEvents(url: string, tokens: TokenStore, gate: Gate, logger: FastifyBaseLogger): EventsRuntime {
  const hub = new EventHub();
  hub.onEvent((event) => {
    if (event.kind === 'token_revoked') tokens.forgetToken(event.tokenId);
    // New tokens (an API token, a build's agent tokens) must work at once, on every replica.
    if (event.kind === 'token_created' || event.kind === 'build_created') tokens.forgetUnknown();
    if (event.kind === 'workspace_deleted') tokens.forgetWorkspace(event.workspaceId);
    gate.handleEvent(event);
  });
  hub.onResync(() => tokens.forgetAll());
  const listener = new EventListener({ url, logger });
  listener.on('event', (event) => hub.apply(event));
  listener.on('cancel', (notice) => hub.cancel(notice));
  listener.on('resync', () => hub.resync());
  listener.start();
  return { hub, listener };
}

export default fp(
  async (app) => {
    const { hub, listener } = startEvents(app.database.url, app.tokens, app.gate, app.log);
    const { notifications, listenReconnects } = app.metrics;
    listener.on('event', (event) => notifications.inc({ kind: event.kind }));
    listener.on('cancel', () => notifications.inc({ kind: 'mcp_cancel' }));
    let connectedBefore = false;
    listener.on('connected', () => {
      if (connectedBefore) listenReconnects.inc();
      connectedBefore = true;
    });
    app.addHook('onClose', () => listener.close());
    app.decorate('events', hub);
    app.decorate('eventListener', listener);
  },
  { name: 'agentgate-events', dependencies: ['agentgate-tokens', 'agentgate-gate'] },
);
