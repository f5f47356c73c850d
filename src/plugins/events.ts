// State transitions from this replica and, through LISTEN/NOTIFY, from the others, delivered to
// the caches that depend on them (tokens, the gate's connections); MCP cancels recorded by the
// other replicas, read when a notification says there are new ones. Decorated as `app.events`;
// the listener closes before the gate and the database.
import fp from 'fastify-plugin';
import type { FastifyBaseLogger } from 'fastify';
import type { Kysely } from 'kysely';
import { EventListener, lastCancelId, readCancels } from '../db/events.js';
import type { Database } from '../db/schema.js';
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

/**
 * Listens on `url` and applies every transition to the token store and the gate. Forgetting a
 * cache entry or closing a cached connection only costs a re-read or a dial, so a notification's
 * word is enough for these; the work in flight reads the rows first (src/gate/in-flight.ts).
 */
export function startEvents(url: string, tokens: TokenStore, gate: Gate, logger: FastifyBaseLogger, db?: Kysely<Database>): EventsRuntime {
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
  listener.on('event', (event) => hub.notified(event));
  listener.on('resync', () => hub.resync());
  if (db) followCancels(db, listener, hub, logger);
  listener.start();
  return { hub, listener };
}

/**
 * Reads the cancel rows the other replicas record, when told there are new ones and after every
 * reconnect (those recorded meanwhile are still applied): one read at a time, the next one
 * following if more were announced during it.
 */
function followCancels(db: Kysely<Database>, listener: EventListener, hub: EventHub, logger: FastifyBaseLogger): void {
  let after: string | undefined;
  let reading = false;
  let again = false;
  let failing = false;
  const read = async (): Promise<void> => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      do {
        again = false;
        if (after === undefined) {
          // Where this replica starts: the cancels recorded before it listened are not its own.
          after = await lastCancelId(db);
          continue;
        }
        const { notices, lastId } = await readCancels(db, after);
        after = lastId;
        for (const notice of notices) hub.cancel(notice);
      } while (again);
      failing = false;
    } catch (error) {
      if (!failing) logger.warn({ err: (error as Error).message }, 'could not read the MCP cancels of the other replicas');
      failing = true;
    } finally {
      reading = false;
    }
  };
  listener.on('cancels', () => void read());
  listener.on('resync', () => void read());
}

export default fp(
  async (app) => {
    const { hub, listener } = startEvents(app.database.url, app.tokens, app.gate, app.log, app.db);
    const { notifications, listenReconnects } = app.metrics;
    listener.on('event', (event) => notifications.inc({ kind: event.kind }));
    // Anything else on the channel: one fixed label, so that made-up kinds cannot make series.
    listener.on('ignored', () => notifications.inc({ kind: 'unknown' }));
    listener.on('cancels', () => notifications.inc({ kind: 'mcp_cancel' }));
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
