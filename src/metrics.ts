// Prometheus metrics (contract §8): one registry per app, default process metrics included.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { droppedLogLines } from './logger.js';

export class Metrics {
  readonly registry = new Registry();
  readonly dbQuerySeconds = new Histogram({
    name: 'agentgate_db_query_seconds',
    help: 'Database query duration in seconds, by outcome',
    labelNames: ['ok'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly connTotal = new Counter({
    name: 'agentgate_conn_total',
    help: 'Gate decisions by code (ok, a sentinel code, or client_closed)',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly dialSeconds = new Histogram({
    name: 'agentgate_dial_seconds',
    help: 'Agent dial duration in seconds, by result',
    labelNames: ['result'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly connections = new Gauge({
    name: 'agentgate_connections',
    help: 'Cached agent connections in this process',
    registers: [this.registry],
  });
  readonly proxyRequests = new Counter({
    name: 'agentgate_proxy_requests_total',
    help: 'Proxied tool-call requests by response status',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });

  readonly proxySeconds = new Histogram({
    name: 'agentgate_proxy_request_seconds',
    help: 'Proxied tool-call duration in seconds (until the response body ends), by status',
    labelNames: ['status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  readonly mcpRequests = new Counter({
    name: 'agentgate_mcp_requests_total',
    help: 'JSON-RPC requests to the MCP front door, by method (initialize, ping, tools/list, tools/call, other) and outcome (ok; tool_error: the agent answered isError; a gate code: refused or failed, served as an isError result or a stale list; rpc_error; cancelled; client_closed; invalid)',
    labelNames: ['method', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly mcpProgressDropped = new Counter({
    name: 'agentgate_mcp_progress_dropped_total',
    help: "Agent progress notifications not passed on because the MCP caller was not reading (its response wanted a drain)",
    registers: [this.registry],
  });

  readonly dialsInFlight = new Gauge({
    name: 'agentgate_dials_in_flight',
    help: 'Dials to agents in progress in this process',
    registers: [this.registry],
  });
  readonly notifications = new Counter({
    name: 'agentgate_notifications_total',
    help: 'Notifications received from PostgreSQL, by kind: state transitions, and mcp_cancel (an MCP cancel from another replica)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly logLinesDropped = new Counter({
    name: 'agentgate_log_lines_dropped_total',
    help: 'Log lines dropped because stdout took no more (its reader stuck or too slow)',
    registers: [this.registry],
    // The count is the logger's (the process's), which exists before the metrics: read at
    // each scrape.
    collect(this: Counter) {
      this.reset();
      this.inc(droppedLogLines());
    },
  });
  /** What load shedding decides on, in seconds (its plugin sets the reader). */
  readEventLoopDelay: () => number = () => 0;
  readonly eventLoopDelay: Gauge = new Gauge({
    name: 'agentgate_event_loop_delay_seconds',
    help: 'The event loop delay load shedding decides on (mean over its last 500 ms sample, less the 10 ms resolution); API calls are shed past 1 s',
    registers: [this.registry],
    collect: (): void => this.eventLoopDelay.set(this.readEventLoopDelay()),
  });
  readonly listenReconnects = new Counter({
    name: 'agentgate_listen_reconnects_total',
    help: 'Times the LISTEN connection was opened again after losing it',
    registers: [this.registry],
  });
  readonly degradedAnswers = new Counter({
    name: 'agentgate_degraded_answers_total',
    help: 'Calls served on a cached connection because the database could not be read',
    registers: [this.registry],
  });
  readonly tokenLookups = new Counter({
    name: 'agentgate_token_lookups_total',
    help: 'Bearer token checks, by where the answer came from (env, cache, unknown_cache, database)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly refusals = new Counter({
    name: 'agentgate_refusals_total',
    help: 'Requests refused to protect the service, by code (OVERLOADED: load shedding or too many waiters on a dial; RATE_LIMITED: per-minute or per-token caps)',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  observeQuery = (seconds: number, ok: boolean): void => {
    this.dbQuerySeconds.observe({ ok: ok ? 'true' : 'false' }, seconds);
  };
}
