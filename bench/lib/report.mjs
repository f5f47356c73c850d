// The bench's verdicts against contract §10 and their renderings: a Markdown report and an SVG chart
// of each measure against its target (hand-written SVG, no dependency).

const READ_ROWS = ['prepared', 'plain', 'sentinel', 'cached-uniform', 'cached-hot'];
const PROXY_ROWS = ['direct', 'reply-from', 'nginx', 'proxied'];
const labels = (n) => ({
  prepared: 'baseline: Fastify + prepared PK read',
  plain: 'baseline: Fastify + plain PK read',
  sentinel: `agentgate: sentinel AGENT_DISCONNECTED, ${n} workspaces`,
  'cached-uniform': `agentgate: cached POST /conn, ${n} workspaces`,
  'cached-hot': 'agentgate: cached POST /conn, one hot workspace',
  direct: 'baseline: the agent called directly',
  'reply-from': 'baseline: bare @fastify/reply-from proxy',
  nginx: 'baseline: nginx proxy_pass, upstream keepalive',
  proxied: 'agentgate: proxied GET /conn/tool/small',
});

const fmt = (v, digits = 2) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits));

/** Every contract §10 target as { id, label, measured, target, unit, higherIsBetter, stretch, result }. */
export function evaluate(r) {
  const s = r.summary;
  const ratio = (a, b) => (s[a] && s[b] ? s[a].reqPerSec / s[b].reqPerSec : Number.NaN);
  const sum = (runs, key) => (runs ?? []).reduce((acc, x) => acc + (x[key] ?? 0), 0);
  const checks = [
    {
      id: 'sentinel-throughput',
      label: `sentinel (${r.options.workspaces} workspaces) req/s ÷ prepared read`,
      measured: ratio('sentinel', 'prepared'),
      target: 1.0,
      unit: 'x',
      higherIsBetter: true,
      valid: s.sentinel?.unexpected === 0 && sum(r.runs.sentinel, 'agentContacts') === 0,
    },
    {
      id: 'sentinel-p99',
      label: 'sentinel p99 (vs prepared read p99)',
      measured: s.sentinel?.p99,
      target: s.prepared?.p99,
      unit: 'ms',
      higherIsBetter: false,
      valid: s.sentinel?.unexpected === 0 && s.prepared?.unexpected === 0,
    },
    {
      id: 'cached-uniform',
      label: `cached /conn (${r.options.workspaces} workspaces) req/s ÷ prepared read`,
      measured: ratio('cached-uniform', 'prepared'),
      target: 1.3,
      unit: 'x',
      higherIsBetter: true,
      valid: s['cached-uniform']?.unexpected === 0 && sum(r.runs['cached-uniform'], 'dials') === 0,
    },
    {
      id: 'cached-hot',
      label: 'cached /conn (hot) req/s ÷ prepared read',
      measured: ratio('cached-hot', 'prepared'),
      target: 1.3,
      unit: 'x',
      higherIsBetter: true,
      valid: s['cached-hot']?.unexpected === 0 && sum(r.runs['cached-hot'], 'dials') === 0,
    },
    {
      id: 'proxied-vs-reply-from',
      label: 'proxied req/s ÷ reply-from',
      measured: ratio('proxied', 'reply-from'),
      target: 1.0,
      unit: 'x',
      higherIsBetter: true,
      valid: s.proxied?.unexpected === 0 && s['reply-from']?.unexpected === 0,
    },
    {
      id: 'proxied-vs-direct',
      label: 'proxied req/s ÷ direct (stretch)',
      measured: ratio('proxied', 'direct'),
      target: 0.33,
      unit: 'x',
      higherIsBetter: true,
      stretch: true,
      valid: s.proxied?.unexpected === 0 && s.direct?.unexpected === 0,
    },
    {
      id: 'added-latency-p50',
      label: `added latency p50 at ${r.options.rate}/s`,
      measured: r.latency.addedP50,
      target: 0.5,
      unit: 'ms',
      higherIsBetter: false,
      valid: sum(r.latency.runs.proxied, 'unexpected') + sum(r.latency.runs.direct, 'unexpected') === 0,
    },
    {
      id: 'added-latency-p99',
      label: `added latency p99 at ${r.options.rate}/s`,
      measured: r.latency.addedP99,
      target: 2,
      unit: 'ms',
      higherIsBetter: false,
      valid: sum(r.latency.runs.proxied, 'unexpected') + sum(r.latency.runs.direct, 'unexpected') === 0,
    },
    {
      id: 'healthz-p99',
      label: '/healthz p99 under cached /conn load',
      measured: r.healthz.p99,
      target: 10,
      unit: 'ms',
      higherIsBetter: false,
      valid: r.healthz.samples > 0 && r.healthz.failures === 0,
    },
    {
      id: 'dial-timeout-p99',
      label: `dial timeout error p99 (bound ${r.dialTimeout.boundMs} ms)`,
      measured: r.dialTimeout.errorP99,
      target: 10,
      unit: 'ms',
      higherIsBetter: false,
      valid: r.dialTimeout.samples > 0 && r.dialTimeout.errorMin >= -1,
    },
    {
      id: 'abort-release-p99',
      label: 'caller abort: dial released, p99',
      measured: r.abort.p99,
      target: 5,
      unit: 'ms',
      higherIsBetter: false,
      valid: r.abort.samples > 0 && r.abort.notReached === 0,
    },
    {
      id: 'memory-per-connection',
      label: `RSS per cached connection (${r.memory.connections})`,
      measured: r.memory.rssPerConnKiB,
      target: 32,
      unit: 'KiB',
      higherIsBetter: false,
      valid: r.memory.connections === r.options.workspaces,
    },
  ];
  for (const c of checks) {
    const ok = Number.isFinite(c.measured) && Number.isFinite(c.target) && (c.higherIsBetter ? c.measured >= c.target : c.measured <= c.target);
    c.result = !c.valid ? 'invalid' : ok ? 'pass' : 'miss';
  }
  return checks;
}

const show = (c, v) => (c.unit === 'x' ? `${fmt(v)}x` : `${fmt(v, c.unit === 'KiB' ? 1 : 2)} ${c.unit}`);

export function renderMarkdown(r, svgName) {
  const m = r.machine;
  const s = r.summary;
  const lines = [];
  lines.push(`# agentgate bench, ${r.started}`, '');
  lines.push(`- Machine: ${m.cpu}, ${m.cores} cores, ${m.os}; load average ${m.loadAverageAtStart.join(' ')} at start, ${m.loadAverageAtEnd.join(' ')} at end`);
  lines.push(`- Node ${m.node}, PostgreSQL ${m.postgres}, agentgate ${m.agentgate}`);
  lines.push(`- Packages: ${Object.entries(m.packages).map(([k, v]) => `${k} ${v}`).join(', ')}; nginx: ${m.nginx}`);
  lines.push(`- Pinning: ${r.method.pinning}`);
  lines.push(`- agentgate: ${r.method.gate}`);
  lines.push(`- Closed loop: ${r.method.closedLoop}; open loop: ${r.method.openLoop}`);
  lines.push(`- Seed: ${r.seed.workspaces} workspaces per set in ${r.seed.seconds} s (SQL); ${r.memory.connections} connections cached in ${r.seed.cacheWarmSeconds} s`);
  for (const note of r.notes) lines.push(`- Note: ${note}`);
  lines.push('');
  lines.push('## Throughput (closed loop)', '');
  lines.push('| configuration | req/s | p50 ms | p99 ms | vs prepared | vs plain | vs direct | vs reply-from | vs nginx | unexpected answers |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const ratio = (a, b) => (s[a] && s[b] ? `${fmt(s[a].reqPerSec / s[b].reqPerSec)}x` : '–');
  const LABELS = labels(r.options.workspaces);
  for (const id of [...READ_ROWS, ...PROXY_ROWS]) {
    const row = s[id];
    if (!row) continue;
    const read = READ_ROWS.includes(id);
    lines.push(
      `| ${LABELS[id]} | ${Math.round(row.reqPerSec)} | ${fmt(row.p50)} | ${fmt(row.p99)} | ` +
        `${read ? ratio(id, 'prepared') : '–'} | ${read ? ratio(id, 'plain') : '–'} | ` +
        `${read ? '–' : ratio(id, 'direct')} | ${read ? '–' : ratio(id, 'reply-from')} | ${read ? '–' : ratio(id, 'nginx')} | ${row.unexpected} |`,
    );
  }
  lines.push('', 'Runs (req/s): ' + Object.entries(r.runs).map(([id, runs]) => `${id} ${runs.map((x) => Math.round(x.reqPerSec)).join('/')}`).join('; '), '');
  lines.push('## contract §10 targets', '');
  lines.push('| check | measured | target | result |');
  lines.push('|---|---:|---:|---|');
  for (const c of r.checks) {
    const target = `${c.higherIsBetter ? '≥' : '≤'} ${show(c, c.target)}${c.stretch ? ' (stretch)' : ''}`;
    lines.push(`| ${c.label} | ${show(c, c.measured)} | ${target} | ${c.result} |`);
  }
  lines.push('', `![each measure against its target](${svgName})`, '');
  lines.push('## Details', '');
  const l = r.latency;
  lines.push(
    `- Open loop at ${r.options.rate}/s: direct p50 ${fmt(l.direct.p50, 3)} ms, p99 ${fmt(l.direct.p99, 3)} ms; ` +
      `proxied p50 ${fmt(l.proxied.p50, 3)} ms, p99 ${fmt(l.proxied.p99, 3)} ms (medians of ${r.options.runs} runs); ` +
      `generator send lag p99 ${fmt(Math.max(...[...l.runs.direct, ...l.runs.proxied].map((x) => x.sendLagP99)), 3)} ms`,
  );
  lines.push(`- /healthz every 10 ms during the cached uniform runs: ${r.healthz.samples} samples, p50 ${fmt(r.healthz.p50)} ms, p99 ${fmt(r.healthz.p99)} ms, max ${fmt(r.healthz.max)} ms, failures ${r.healthz.failures}`);
  lines.push(
    `- Dial timeout (bound ${r.dialTimeout.boundMs} ms, black-holed agent, ${r.dialTimeout.samples} dials, 10 at a time): error p50 ${fmt(r.dialTimeout.errorP50)} ms, ` +
      `p99 ${fmt(r.dialTimeout.errorP99)} ms, max ${fmt(r.dialTimeout.errorMax)} ms; answers ${Object.entries(r.dialTimeout.codes).map(([k, v]) => `${k} x${v}`).join(', ')}`,
  );
  lines.push(
    `- Caller abort (${r.abort.samples} callers leaving a dial held by a silent agent): agent-side socket closed after p50 ${fmt(r.abort.p50)} ms, p99 ${fmt(r.abort.p99)} ms, ` +
      `max ${fmt(r.abort.max)} ms; dials never reached ${r.abort.notReached}, not released within 2 s ${r.abort.notReleased}`,
  );
  if (r.mcp) {
    lines.push(
      `- MCP tools/call (${r.mcp.calls} one at a time per run, the agent's own /mcp and the workspace's front door): the gate adds ` +
        `p50 ${fmt(r.mcp.addedP50, 3)} ms, p99 ${fmt(r.mcp.addedP99, 3)} ms (direct p50 ${fmt(r.mcp.direct.p50, 3)} ms, p99 ${fmt(r.mcp.direct.p99, 3)} ms; ` +
        `through the gate p50 ${fmt(r.mcp.gated.p50, 3)} ms, p99 ${fmt(r.mcp.gated.p99, 3)} ms; medians of ${r.mcp.runs.direct.length} runs); ` +
        `unexpected answers ${r.mcp.unexpected.direct}/${r.mcp.unexpected.gated}`,
    );
  }
  const mem = r.memory;
  lines.push(
    `- Memory: RSS ${fmt(mem.rssBefore / 2 ** 20, 1)} → ${fmt(mem.rssAfter / 2 ** 20, 1)} MiB, heap used ${fmt(mem.heapBefore / 2 ** 20, 1)} → ${fmt(mem.heapAfter / 2 ** 20, 1)} MiB ` +
      `for ${mem.connections} connections: ${fmt(mem.rssPerConnKiB, 1)} KiB RSS, ${fmt(mem.heapPerConnKiB, 1)} KiB heap each; ${mem.connectionsAtEnd} still cached at the end`,
  );
  lines.push(`- Sentinel runs: ${(r.runs.sentinel ?? []).map((x) => x.agentContacts).join('/')} agent connections (must be 0); dials during cached runs: ${['cached-uniform', 'cached-hot', 'proxied'].map((id) => `${id} ${(r.runs[id] ?? []).map((x) => x.dials).join('/')}`).join(', ')}`);
  lines.push('');
  return `${lines.join('\n')}\n`;
}

const escape = (text) => String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** One bar per check: the measure divided by its target, the target at 1. */
export function renderSvg(r) {
  const checks = r.checks;
  const rowH = 28;
  const labelW = 330;
  const barW = 380;
  const valueW = 250;
  const top = 48;
  const width = labelW + barW + valueW + 20;
  const height = top + checks.length * rowH + 40;
  const maxScale = 3;
  const x = (v) => labelW + (Math.min(Math.max(v, 0), maxScale) / maxScale) * barW;
  const colour = { pass: '#2e7d32', miss: '#c62828', invalid: '#9e9e9e' };
  const parts = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  parts.push(`<text x="10" y="20" font-size="14" font-weight="bold">agentgate bench ${escape(r.started.slice(0, 10))}: each measure ÷ its contract §10 target (target = 1)</text>`);
  parts.push(`<text x="10" y="38" fill="#555">≥ rows pass right of the line, ≤ rows left of it; bars capped at ${maxScale}</text>`);
  for (let t = 0; t <= maxScale; t += 0.5) {
    parts.push(`<line x1="${x(t)}" y1="${top - 4}" x2="${x(t)}" y2="${top + checks.length * rowH}" stroke="#eeeeee"/>`);
    parts.push(`<text x="${x(t)}" y="${top + checks.length * rowH + 14}" text-anchor="middle" fill="#777">${t}</text>`);
  }
  checks.forEach((c, i) => {
    const y = top + i * rowH;
    const scaled = Number.isFinite(c.measured) && Number.isFinite(c.target) && c.target !== 0 ? c.measured / c.target : Number.NaN;
    const sign = c.higherIsBetter ? '≥' : '≤';
    parts.push(`<text x="10" y="${y + 17}">${escape(c.label)}</text>`);
    if (Number.isFinite(scaled)) {
      parts.push(`<rect x="${labelW}" y="${y + 6}" width="${Math.max(1, x(scaled) - labelW)}" height="${rowH - 12}" fill="${colour[c.result]}"/>`);
    }
    parts.push(
      `<text x="${labelW + barW + 10}" y="${y + 17}">${escape(`${show(c, c.measured)} ${sign} ${show(c, c.target)}${c.stretch ? ' (stretch)' : ''}: ${c.result}`)}</text>`,
    );
  });
  parts.push(`<line x1="${x(1)}" y1="${top - 6}" x2="${x(1)}" y2="${top + checks.length * rowH}" stroke="#000" stroke-width="2"/>`);
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
