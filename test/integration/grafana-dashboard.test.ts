// The Grafana dashboard of deploy/grafana/agentgate.json against the service's real /metrics:
// every query names a metric the service exports, with labels that metric carries, and the file
// is a dashboard Grafana can import (unique panel ids, a grid position each, one data source
// variable).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENV_ADMIN_TOKEN, startTestApp, type TestApp } from '../support/app.js';
import { startEchoAgent, type EchoAgent } from '../support/echo-agent.js';
import { connectClient } from '../support/mcp.js';
import { eventually } from '../support/eventually.js';
import { AgentRows, conn, createWorkspace } from '../support/gate-fixtures.js';
import { promqlNames, type PromqlNames } from '../support/promql-names.js';

// Metrics a panel shows before the service exports them. Each must sit in a collapsed row and
// must not be exported yet: once it is, remove it from here so that its labels are checked too.
// Attached by Prometheus to every scraped series (the scrape job and target), never by the service.
const TARGET_LABELS = new Set(['job', 'instance']);
const SUFFIXES: Array<[string, string[]]> = [
  ['_bucket', ['histogram']],
  ['_sum', ['histogram', 'summary']],
  ['_count', ['histogram', 'summary']],
];

interface Target {
  expr: string;
  refId: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  collapsed?: boolean;
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

const dashboard = JSON.parse(readFileSync(new URL('../../deploy/grafana/agentgate.json', import.meta.url), 'utf8')) as Dashboard;

/** Every panel, with the row it sits in (panels of a collapsed row are kept inside it). */
function allPanels(): Array<{ panel: Panel; row: Panel | undefined }> {
  const out: Array<{ panel: Panel; row: Panel | undefined }> = [];
  let row: Panel | undefined;
  for (const panel of dashboard.panels) {
    if (panel.type === 'row') row = panel;
    out.push({ panel, row: panel.type === 'row' ? undefined : row });
    for (const inner of panel.panels ?? []) out.push({ panel: inner, row: panel });
  }
  return out;
}

/** `label_values(<selector>, <label>)`, the one variable query form the dashboard uses. */
function variableNames(query: string): PromqlNames {
  const match = /^label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)$/.exec(query.trim());
  if (!match) throw new Error(`unsupported variable query: ${query}`);
  const names = promqlNames(match[1]!);
  return { selectors: names.selectors, groupings: [{ clause: 'by', labels: [match[2]!], metrics: names.selectors.map((s) => s.metric) }] };
}

interface Exposition {
  types: Map<string, string>;
  /** Label names seen on the samples of each series name (`le` on `_bucket` only, as exported). */
  labels: Map<string, Set<string>>;
}

function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const labels = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!sample) throw new Error(`unparsed exposition line: ${line}`);
    const names = labels.get(sample[1]!) ?? new Set<string>();
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"/g)) names.add(m[1]!);
    labels.set(sample[1]!, names);
  }
  return { types, labels };
}

/** The exported family a series name belongs to (`x_bucket` of histogram `x` is `x`), or undefined. */
function family(exposition: Exposition, metric: string): string | undefined {
  if (exposition.types.has(metric)) return metric;
  for (const [suffix, kinds] of SUFFIXES) {
    const base = metric.endsWith(suffix) ? metric.slice(0, -suffix.length) : undefined;
    if (base !== undefined && kinds.includes(exposition.types.get(base) ?? '')) return base;
  }
  return undefined;
}

describe('the PromQL name extractor', () => {
  const names = (expr: string) => promqlNames(expr);

  it('finds the selectors and their matchers, and skips functions, keywords, strings, ranges and variables', () => {
    expect(names('sum by (code) (rate(agentgate_conn_total{job=~"$job", code!="ok"}[$__rate_interval]))')).toEqual({
      selectors: [{ metric: 'agentgate_conn_total', labels: ['job', 'code'] }],
      groupings: [{ clause: 'by', labels: ['code'], metrics: ['agentgate_conn_total'] }],
    });
    expect(names('histogram_quantile(0.99, sum by (le, result) (rate(agentgate_dial_seconds_bucket[5m])))')).toEqual({
      selectors: [{ metric: 'agentgate_dial_seconds_bucket', labels: [] }],
      groupings: [{ clause: 'by', labels: ['le', 'result'], metrics: ['agentgate_dial_seconds_bucket'] }],
    });
    // A matcher's value and a string argument are never names, whatever they look like.
    expect(names('label_replace(up{a="rate(b)"}, "dst", "sum", "src", "(.*)") > bool 0.5 offset 1h30m').selectors).toEqual([
      { metric: 'up', labels: ['a'] },
    ]);
    expect(names('{__name__="process_resident_memory_bytes", instance="x"} @ end()').selectors).toEqual([
      { metric: 'process_resident_memory_bytes', labels: ['instance'] },
    ]);
  });

  it('ties a postfix by clause to its aggregation and a matching clause to both sides', () => {
    expect(names('sum(rate(a_total[1m])) by (kind) / ignoring (kind) group_left sum(b)')).toEqual({
      selectors: [
        { metric: 'a_total', labels: [] },
        { metric: 'b', labels: [] },
      ],
      groupings: [
        { clause: 'by', labels: ['kind'], metrics: ['a_total'] },
        { clause: 'matching', labels: ['kind'], metrics: ['a_total', 'b'] },
      ],
    });
    expect(names('max without (instance) (x) + on() vector(1)').groupings).toEqual([
      { clause: 'without', labels: ['instance'], metrics: ['x'] },
      { clause: 'matching', labels: [], metrics: ['x'] },
    ]);
  });

  it('refuses what it cannot read rather than guess', () => {
    expect(() => names('sum(rate(a[5m])')).toThrow(/unbalanced/);
    expect(() => names('rate(a{b=c}[5m])')).toThrow(/label matcher/);
    expect(() => names('{job="x"}')).toThrow(/without a metric name/);
    expect(() => names('rate(a[5m]) by (x)')).toThrow(/without an aggregation/);
    expect(() => names('a{b="c"')).toThrow(/unterminated|label matcher/);
    expect(() => names('a ~ b')).toThrow(/unexpected/);
  });
});

describe('the Grafana dashboard', () => {
  let t: TestApp;
  let echo: EchoAgent;
  let exposition: Exposition;

  beforeAll(async () => {
    // A per-minute budget small enough to be spent below, so that a refusal is counted.
    t = await startTestApp({ processMetrics: true, env: { AGENTGATE_RATE_LIMIT_PER_MIN: '5' } });
    echo = await startEchoAgent();
    const ws = await createWorkspace(t, [{ name: 'main', address: echo.address }]);
    await AgentRows.heartbeatOnce(t.database.url, ws.agents[0]!.id);
    // Traffic for the labelled series: a dial and a gate decision, proxied calls, a refusal.
    expect((await conn(t, ws.id)).status).toBe(200);
    expect((await t.call('GET', `/workspaces/${ws.id}/conn/echo`, { token: ENV_ADMIN_TOKEN })).status).toBe(200);
    expect((await t.call('GET', `/workspaces/${ws.id}/conn/status?code=500`, { token: ENV_ADMIN_TOKEN })).status).toBe(500);
    const created = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'dashboard', scope: 'conn' } });
    expect(created.status).toBe(201);
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await conn(t, ws.id, created.body.token as string)).status);
    expect(statuses).toContain(429);
    // One MCP session, under a token of its own (the budget of 5 a minute is per token):
    // initialize and ping, which agentgate answers itself, are counted.
    const mcpToken = await t.call('POST', '/tokens', { token: ENV_ADMIN_TOKEN, body: { name: 'dashboard-mcp', scope: 'conn' } });
    expect(mcpToken.status).toBe(201);
    const mcp = await connectClient(`${t.url}/workspaces/${ws.id}/mcp`, { token: mcpToken.body.token as string });
    try {
      await mcp.client.ping();
    } finally {
      await mcp.close();
    }
    const scrape = async () => (await t.call('GET', '/metrics')).text;
    await eventually(async () => (await scrape()).includes('agentgate_notifications_total{kind="build_created"}'), 5_000, 'a notification counted');
    // Garbage collections are counted as they happen: make some garbage until one is.
    const makeGarbage = () => {
      let made = 0;
      for (let i = 0; i < 2_000; i++) made += new Array<number>(1_000).fill(i).length;
      return made;
    };
    await eventually(
      async () => makeGarbage() > 0 && (await scrape()).includes('nodejs_gc_duration_seconds_sum{kind='),
      5_000,
      'a garbage collection counted',
    );
    exposition = parseExposition(await scrape());
  });
  afterAll(async () => {
    await echo?.close();
    await t?.close();
  });

  it('is a dashboard Grafana imports: uid, title, a Prometheus data source variable, unique ids, grid positions', () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.title).toBe('agentgate');
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    expect(variables.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(variables.get('job')?.type).toBe('query');
    expect(variables.get('instance')?.type).toBe('query');

    const panels = allPanels();
    expect(panels.filter(({ panel }) => panel.type !== 'row').length).toBeGreaterThanOrEqual(15);
    const ids = panels.map(({ panel }) => panel.id);
    expect(ids.every((id) => Number.isInteger(id) && id > 0)).toBe(true);
    expect(ids.filter((id, i) => ids.indexOf(id) !== i), 'duplicate panel ids').toEqual([]);
    for (const { panel } of panels) {
      const { x, y, w, h } = panel.gridPos;
      expect([x, y, w, h].every(Number.isInteger), panel.title).toBe(true);
      expect(x >= 0 && y >= 0 && w >= 1 && h >= 1 && x + w <= 24, panel.title).toBe(true);
      expect(['row', 'timeseries', 'stat'], panel.title).toContain(panel.type);
      if (panel.type === 'row') continue;
      expect(panel.title.length, `panel ${panel.id}`).toBeGreaterThan(0);
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      const targets = panel.targets ?? [];
      expect(targets.length, panel.title).toBeGreaterThan(0);
      expect(new Set(targets.map((target) => target.refId)).size, panel.title).toBe(targets.length);
      for (const target of targets) {
        expect(target.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
        expect(target.expr.trim().length, panel.title).toBeGreaterThan(0);
      }
    }
    // Panels shown at once must not overlap on the grid.
    const shown = dashboard.panels;
    for (const [i, a] of shown.entries()) {
      for (const b of shown.slice(i + 1)) {
        const apart =
          a.gridPos.x + a.gridPos.w <= b.gridPos.x ||
          b.gridPos.x + b.gridPos.w <= a.gridPos.x ||
          a.gridPos.y + a.gridPos.h <= b.gridPos.y ||
          b.gridPos.y + b.gridPos.h <= a.gridPos.y;
        expect(apart, `"${a.title}" and "${b.title}" overlap`).toBe(true);
      }
    }
  });

  it('names only metrics the service exports, each with labels that metric carries', () => {
    const queries: Array<{ where: string; names: PromqlNames }> = [];
    for (const { panel } of allPanels()) {
      for (const target of panel.targets ?? []) queries.push({ where: `"${panel.title}" ${target.refId}`, names: promqlNames(target.expr) });
    }
    for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
      const query = typeof variable.query === 'string' ? variable.query : variable.query.query;
      queries.push({ where: `variable ${variable.name}`, names: variableNames(query) });
    }
    expect(queries.length).toBeGreaterThan(20);

    const named = new Set<string>();
    const carries = (metric: string, label: string) => TARGET_LABELS.has(label) || (exposition.labels.get(metric)?.has(label) ?? false);
    for (const { where, names } of queries) {
      expect(names.selectors.length, where).toBeGreaterThan(0);
      for (const { metric, labels } of names.selectors) {
        named.add(metric);
        expect(family(exposition, metric), `${where}: ${metric} is not exported`).toBeDefined();
        expect(exposition.labels.has(metric), `${where}: no series of ${metric} in the scrape`).toBe(true);
        for (const label of labels) expect(carries(metric, label), `${where}: ${metric} has no label "${label}"`).toBe(true);
      }
      for (const { clause, labels, metrics } of names.groupings) {
        for (const metric of metrics) {
          for (const label of labels) expect(carries(metric, label), `${where}: ${metric} has no label "${label}"`).toBe(true);
          // Summing buckets without keeping `le` leaves histogram_quantile nothing to interpolate.
          if (metric.endsWith('_bucket') && clause !== 'matching') {
            expect(clause === 'by' ? labels.includes('le') : !labels.includes('le'), `${where}: ${metric} loses "le"`).toBe(true);
          }
        }
      }
    }
    // The families the dashboard exists for (contract §8) are all on it.
    for (const metric of [
      'agentgate_conn_total',
      'agentgate_dial_seconds_bucket',
      'agentgate_connections',
      'agentgate_dials_in_flight',
      'agentgate_db_query_seconds_bucket',
      'agentgate_degraded_answers_total',
      'agentgate_proxy_requests_total',
      'agentgate_refusals_total',
      'agentgate_token_lookups_total',
      'agentgate_notifications_total',
      'agentgate_listen_reconnects_total',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_gc_duration_seconds_sum',
      'agentgate_mcp_requests_total',
    ]) {
      expect(named, metric).toContain(metric);
    }
  });
});
