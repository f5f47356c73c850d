// State-transition events on PostgreSQL's `agentgate_events` channel (contract §5 step 13):
// published in the same transaction as the change, received by every replica's listener. What
// arrives is a hint: a notification needs no privilege beyond connecting, so its payload is
// checked against the events' schema (anything else is ignored and counted as `unknown`), and
// what acts on it reads the rows before ending anything. MCP cancels that found no call where
// they arrived are rows of their own (mcp_cancels), announced on a channel of their own: a
// notification there only says there are new rows to read.
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { sql, type Kysely } from 'kysely';
import type { FastifyBaseLogger as Logger } from 'fastify';
import type { Database } from './schema.js';
import { parseGateEvent, type CancelNotice, type GateEvent } from '../domain/events.js';

export const EVENTS_CHANNEL = 'agentgate_events';
export const CANCELS_CHANNEL = 'agentgate_mcp_cancels';
const MAX_REASON_CHARS = 200;
/** A cancel older than this is not applied: its call, if any, has long been answered or given up. */
const CANCEL_WINDOW = '1 minute';
/** Cancel rows are swept after this. */
const CANCEL_KEPT = '5 minutes';
/** The most cancel rows one read takes. */
const CANCELS_PER_READ = 500;

/** Queues the event for delivery when the surrounding transaction commits. */
export async function publishEvent(db: Kysely<Database>, event: GateEvent): Promise<void> {
  await sql`select pg_notify(${EVENTS_CHANNEL}, ${JSON.stringify(event)})`.execute(db);
}

/** A cancel's key holds the caller's request id, which may be a long string: longer ones are not sent on. */
export const MAX_CANCEL_KEY_CHARS = 1_024;

/**
 * Records cancels for every replica, and tells them there are new ones; resolves with how many
 * it carried (a key over MAX_CANCEL_KEY_CHARS is left out).
 */
export async function publishCancels(db: Kysely<Database>, given: readonly CancelNotice[]): Promise<number> {
  const notices = given.filter((n) => n.key.length <= MAX_CANCEL_KEY_CHARS);
  if (notices.length === 0) return 0;
  await sql`
    with swept as (
      delete from mcp_cancels where created_at < now() - ${CANCEL_KEPT}::interval
    ), added as (
      insert into mcp_cancels (key, reason)
      select * from unnest(${notices.map((n) => Buffer.from(n.key, 'utf8'))}::bytea[], ${notices.map((n) => storable(n.reason))}::text[])
    )
    select pg_notify(${CANCELS_CHANNEL}, '')`.execute(db);
  return notices.length;
}

/** A caller's reason as a text column holds it: cut short, without NUL. */
const storable = (reason: string) => reason.replaceAll('\u0000', '').slice(0, MAX_REASON_CHARS);

/** The newest cancel row's id: where a replica starts reading (older ones are not its business). */
export async function lastCancelId(db: Kysely<Database>): Promise<string> {
  const { rows } = await sql<{ id: string }>`select coalesce(max(id), 0)::text as id from mcp_cancels`.execute(db);
  return rows[0]?.id ?? '0';
}

/** The recent cancels recorded after `afterId`, oldest first, with the last id read. */
export async function readCancels(db: Kysely<Database>, afterId: string): Promise<{ notices: CancelNotice[]; lastId: string }> {
  const { rows } = await sql<{ id: string; key: Buffer; reason: string }>`
    select id::text as id, key, reason from mcp_cancels
     where id > ${afterId}::bigint and created_at > now() - ${CANCEL_WINDOW}::interval
     order by id limit ${CANCELS_PER_READ}`.execute(db);
  return { notices: rows.map((r) => ({ key: r.key.toString('utf8'), reason: r.reason })), lastId: rows.at(-1)?.id ?? afterId };
}

/** What a notification on the events channel carries: an event, or nothing of ours. */
export function parseEvent(payload: string | undefined): GateEvent | undefined {
  if (!payload) return undefined;
  try {
    return parseGateEvent(JSON.parse(payload));
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
 * PostgreSQL goes away, without crashing the process. Emits `event` for each well-formed
 * transition, `ignored` for a notification on the events channel that is not one, `cancels`
 * when new MCP cancels were recorded, and `resync` after every (re)connect, since
 * notifications sent while disconnected are lost.
 */
export class EventListener extends EventEmitter<{ event: [GateEvent]; ignored: []; cancels: []; resync: []; connected: [] }> {
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
        this.emit('cancels');
        return;
      }
      const event = parseEvent(message.payload);
      if (event) this.emit('event', event);
      else this.emit('ignored');
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
