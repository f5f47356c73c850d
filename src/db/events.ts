// State-transition events on PostgreSQL's `agentgate_events` channel (SPEC 5 step 13):
// published in the same transaction as the change, received by every replica's listener. MCP
// cancels that found no call where they arrived travel on a channel of their own, so that the
// events channel carries only transitions.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { sql, type Kysely } from 'kysely';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { Database } from './schema.js';
import type { CancelNotice, GateEvent } from '../domain/events.js';

export const EVENTS_CHANNEL = 'agentgate_events';
export const CANCELS_CHANNEL = 'agentgate_mcp_cancels';
/** PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. */
const MAX_NOTIFY_BYTES = 7_900;
const MAX_REASON_CHARS = 200;

/** Queues the event for delivery when the surrounding transaction commits. */
export async function publishEvent(db: Kysely<Database>, event: GateEvent): Promise<void> {
  await sql`select pg_notify(${EVENTS_CHANNEL}, ${JSON.stringify(event)})`.execute(db);
}

/**
 * Sends cancels to every replica, in one notification; resolves with how many it carried (those
 * that do not fit in a notification are left out: a client's request id can be a long string).
 */
export async function publishCancels(db: Kysely<Database>, notices: readonly CancelNotice[]): Promise<number> {
  const cancels = notices.map((n) => ({ key: n.key, reason: n.reason.slice(0, MAX_REASON_CHARS) }));
  let payload = JSON.stringify({ cancels });
  while (cancels.length > 0 && Buffer.byteLength(payload) > MAX_NOTIFY_BYTES) {
    cancels.pop();
    payload = JSON.stringify({ cancels });
  }
  if (cancels.length === 0) return 0;
  await sql`select pg_notify(${CANCELS_CHANNEL}, ${payload})`.execute(db);
  return cancels.length;
}

/** The cancels a notification carries; none when it is not one of ours. */
export function parseCancels(payload: string | undefined): CancelNotice[] {
  if (!payload) return [];
  try {
    const value = JSON.parse(payload) as { cancels?: unknown } | null;
    if (!value || !Array.isArray(value.cancels)) return [];
    return value.cancels.flatMap((c: unknown) => {
      const n = c as Partial<CancelNotice> | null;
      return n && typeof n.key === 'string' && typeof n.reason === 'string' ? [{ key: n.key, reason: n.reason }] : [];
    });
  } catch {
    return [];
  }
}

export function parseEvent(payload: string | undefined): GateEvent | undefined {
  if (!payload) return undefined;
  try {
    const value = JSON.parse(payload) as Partial<GateEvent> | null;
    return value && typeof value.kind === 'string' ? (value as GateEvent) : undefined;
  } catch {
    return undefined;
  }
}

export interface EventListenerOptions {
  url: string;
  logger: Logger;
  /** First reconnect delay; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * How often the connection is probed with a query, and how long the probe may take. A
   * LISTEN connection only receives: without a probe, one that died silently (a peer gone
   * without a reset, a black-holed network) would lose every notification unnoticed.
   */
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
}

/**
 * Holds one dedicated LISTEN connection (never a pooled one) and reconnects with backoff when
 * PostgreSQL goes away, without crashing the process. Emits `event` for each transition,
 * `cancel` for each MCP cancel, and `resync` after every (re)connect, since notifications sent
 * while disconnected are lost.
 */
export class EventListener extends EventEmitter<{ event: [GateEvent]; cancel: [CancelNotice]; resync: []; connected: [] }> {
  #client: pg.Client | undefined;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #probe: NodeJS.Timeout | undefined;
  #backoff: number;
  readonly #options: Required<EventListenerOptions>;

  constructor(options: EventListenerOptions) {
    super();
    this.#options = { minBackoffMs: 100, maxBackoffMs: 5_000, probeIntervalMs: 15_000, probeTimeoutMs: 5_000, ...options };
    this.#backoff = this.#options.minBackoffMs;
  }

  get connected(): boolean {
    return this.#client !== undefined;
  }

  start(): void {
    void this.#connect();
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({
      connectionString: this.#options.url,
      application_name: 'agentgate-listener',
      keepAlive: true,
      connectionTimeoutMillis: 5_000,
    });
    let failed = false;
    // Set once connected; read by fail(), which may run before that.
    const probe: { timer?: NodeJS.Timeout } = {};
    const fail = (error?: Error) => {
      if (failed) return;
      failed = true;
      clearInterval(probe.timer);
      if (this.#client === client) this.#client = undefined;
      client.removeAllListeners('notification');
      // A silent peer would never acknowledge a polite end: cut the socket.
      (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      void client.end().catch(() => undefined);
      if (this.#closed) return;
      this.#options.logger.warn(
        { err: error?.message, retryInMs: this.#backoff },
        'event listener lost its database connection; reconnecting',
      );
      this.#schedule();
    };
    client.on('error', fail);
    client.on('end', () => fail());
    client.on('notification', (message) => {
      if (message.channel === CANCELS_CHANNEL) {
        for (const notice of parseCancels(message.payload)) this.emit('cancel', notice);
        return;
      }
      const event = parseEvent(message.payload);
      if (event) this.emit('event', event);
    });
    try {
      await client.connect();
      const listen: pg.QueryConfig & { query_timeout: number } = { text: `listen ${EVENTS_CHANNEL}; listen ${CANCELS_CHANNEL}`, query_timeout: this.#options.probeTimeoutMs };
      await client.query(listen);
    } catch (error) {
      fail(error as Error);
      return;
    }
    if (this.#closed || failed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#backoff = this.#options.minBackoffMs;
    let probing = false;
    probe.timer = setInterval(() => {
      if (probing) return;
      probing = true;
      // pg reads query_timeout per query, though its types do not declare it.
      const query: pg.QueryConfig & { query_timeout: number } = { text: 'select 1', query_timeout: this.#options.probeTimeoutMs };
      client.query(query).then(
        () => (probing = false),
        (error: Error) => fail(new Error(`the probe of the LISTEN connection failed: ${error.message}`)),
      );
    }, this.#options.probeIntervalMs);
    probe.timer.unref();
    this.#probe = probe.timer;
    this.emit('resync');
    this.emit('connected');
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#connect(), this.#backoff);
    this.#timer.unref();
    this.#backoff = Math.min(this.#backoff * 2, this.#options.maxBackoffMs);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#probe);
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
    }
  }
}
