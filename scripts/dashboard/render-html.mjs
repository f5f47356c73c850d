// Draws a Grafana dashboard's panels as one HTML page with inline SVG charts, laid out by their
// gridPos as Grafana lays them out (24 columns, 30 px rows), from the series a range query gave
// each target. Only what deploy/grafana/agentgate.json uses: rows, timeseries and stat panels.

const PAGE_WIDTH = 1600;
const PAD = 12;
const CELL = 30;
const MARGIN = 8;
const HEADER = 64;
const PALETTE = ['#7EB26D', '#EAB839', '#6ED0E0', '#EF843C', '#E24D42', '#1F78C1', '#BA43A9', '#705DA0', '#508642', '#CCA300', '#447EBC', '#C15C17'];
const NAMED = { green: '#73BF69', orange: '#FF9830', red: '#F2495C' };

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

/** A value in a Grafana unit, with `decimals` digits after the point (auto when undefined). */
export function formatValue(value, unit, decimals) {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? 'NaN' : value > 0 ? '+Inf' : '-Inf';
  const fixed = (v, d) => {
    const digits = d ?? (Math.abs(v) >= 100 || v === 0 ? 0 : Math.abs(v) >= 10 ? 1 : 2);
    return v.toFixed(digits);
  };
  const scaled = (v, steps, base) => {
    let i = 0;
    while (i < steps.length - 1 && Math.abs(v) >= base) {
      v /= base;
      i += 1;
    }
    return `${fixed(v, decimals)} ${steps[i]}`.trimEnd();
  };
  switch (unit) {
    case 'reqps':
      return `${fixed(value, decimals)} req/s`;
    case 'ops':
      return `${fixed(value, decimals)} ops/s`;
    case 'percentunit':
      return `${fixed(value * 100, decimals)}%`;
    case 'bytes':
      return scaled(value, ['B', 'KiB', 'MiB', 'GiB', 'TiB'], 1024);
    case 's':
      if (value === 0) return '0 s';
      if (Math.abs(value) < 1e-3) return `${fixed(value * 1e6, decimals)} µs`;
      if (Math.abs(value) < 1) return `${fixed(value * 1e3, decimals)} ms`;
      return `${fixed(value, decimals)} s`;
    default:
      return scaled(value, ['', 'K', 'M', 'B'], 1000);
  }
}

/** About how wide `text` is at the legend's 11 px (DejaVu Sans): no layout engine here to ask. */
const textWidth = (text) => [...text].reduce((w, c) => w + (/[A-Z]/.test(c) ? 8 : /[a-z0-9]/.test(c) ? 6.6 : /[ ._:]/.test(c) ? 3.8 : 7), 0);

function niceStep(range, ticks, unit) {
  if (unit === 'bytes') {
    // Steps of whole binary units: 32 MiB, not 47.7 MiB.
    const power = 1024 ** Math.max(0, Math.floor(Math.log(range / ticks) / Math.log(1024)));
    return niceStep(range / power, ticks) * power;
  }
  const raw = range / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  return step;
}

/** Decimals that tell ticks `step` apart, in the scale formatValue shows them in. */
const tickDecimals = (step, unit) => {
  let scaled = step;
  if (unit === 'percentunit') scaled = step * 100;
  else if (unit === 's') scaled = step < 1e-3 ? step * 1e6 : step < 1 ? step * 1e3 : step;
  else if (unit === 'bytes') scaled = step / 1024 ** Math.max(0, Math.floor(Math.log(step) / Math.log(1024)));
  let decimals = 0;
  while (decimals < 4 && Math.abs(scaled * 10 ** decimals - Math.round(scaled * 10 ** decimals)) > 1e-6) decimals += 1;
  return decimals;
};

const clock = (t) => new Date(t * 1000).toISOString().slice(11, 19);

export const legendName = (format, labels) => (format ?? '').replace(/\{\{\s*(\w+)\s*\}\}/g, (_, name) => labels[name] ?? '').trim() || '(value)';

function panelBox(gridPos) {
  const col = (PAGE_WIDTH - 2 * PAD + MARGIN) / 24;
  return {
    x: PAD + gridPos.x * col,
    y: HEADER + gridPos.y * (CELL + MARGIN),
    w: gridPos.w * col - MARGIN,
    h: gridPos.h * CELL + (gridPos.h - 1) * MARGIN,
  };
}

function timeseries(panel, series, range) {
  const box = panelBox(panel.gridPos);
  const unit = panel.fieldConfig?.defaults?.unit;
  const stacked = panel.fieldConfig?.defaults?.custom?.stacking?.mode === 'normal';
  const named = series
    .map((s, i) => ({ ...s, color: PALETTE[i % PALETTE.length] }))
    .filter((s) => s.points.some(([, v]) => Number.isFinite(v)));
  // Legend first: it takes the lines it needs below the chart.
  const legendItems = named.map((s) => ({ name: s.name, color: s.color, width: 30 + textWidth(s.name) }));
  const legendLines = [];
  for (const item of legendItems) {
    const line = legendLines[legendLines.length - 1];
    if (line && line.width + item.width <= box.w - 16) {
      line.items.push(item);
      line.width += item.width;
    } else legendLines.push({ items: [item], width: item.width });
  }
  const shownLines = legendLines.slice(0, 3);
  const plot = { left: 62, top: 34, right: box.w - 12, bottom: box.h - 24 - shownLines.length * 17 };

  // Stacking adds each series onto the ones before it, point by point.
  const base = new Map();
  const drawn = named.map((s) => {
    const points = s.points.map(([t, v]) => {
      const below = stacked ? (base.get(t) ?? 0) : 0;
      const y = Number.isFinite(v) ? below + v : NaN;
      if (stacked && Number.isFinite(v)) base.set(t, y);
      return [t, y, below];
    });
    return { ...s, points };
  });
  const values = drawn.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite);
  const max = Math.max(...values, 0);
  const step = niceStep(max > 0 ? max * 1.08 : 1, 4, unit);
  const top = Math.max(step, Math.ceil((max * 1.04) / step) * step);
  const sx = (t) => plot.left + ((t - range.start) / (range.end - range.start)) * (plot.right - plot.left);
  const sy = (v) => plot.bottom - (v / top) * (plot.bottom - plot.top);

  const parts = [];
  const decimals = tickDecimals(step, unit);
  for (let v = 0; v <= top + step / 1000; v += step) {
    parts.push(`<line x1="${plot.left}" x2="${plot.right}" y1="${sy(v)}" y2="${sy(v)}" class="grid"/>`);
    parts.push(`<text x="${plot.left - 6}" y="${sy(v) + 4}" class="tick" text-anchor="end">${esc(formatValue(v, unit, decimals))}</text>`);
  }
  const span = range.end - range.start;
  const tStep = [5, 10, 15, 20, 30, 60, 120, 300].find((s) => span / s <= 7) ?? 600;
  for (let t = Math.ceil(range.start / tStep) * tStep; t <= range.end; t += tStep) {
    parts.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${plot.top}" y2="${plot.bottom}" class="grid"/>`);
    parts.push(`<text x="${sx(t)}" y="${plot.bottom + 15}" class="tick" text-anchor="middle">${clock(t)}</text>`);
  }
  // Areas first (lowest series last, so that each fill sits on the one below), then lines.
  for (const s of [...drawn].reverse()) {
    for (const run of runs(s.points)) {
      if (run.length < 2) continue;
      const upper = run.map(([t, y]) => `${sx(t).toFixed(1)},${sy(y).toFixed(1)}`);
      const lower = [...run].reverse().map(([t, , below]) => `${sx(t).toFixed(1)},${sy(below).toFixed(1)}`);
      parts.push(`<polygon points="${[...upper, ...lower].join(' ')}" fill="${s.color}" fill-opacity="0.12"/>`);
    }
  }
  for (const s of drawn) {
    for (const run of runs(s.points)) {
      if (run.length === 1) parts.push(`<circle cx="${sx(run[0][0])}" cy="${sy(run[0][1])}" r="2" fill="${s.color}"/>`);
      else parts.push(`<polyline points="${run.map(([t, y]) => `${sx(t).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}" fill="none" stroke="${s.color}" stroke-width="1.5"/>`);
    }
  }
  if (named.length === 0) parts.push(`<text x="${box.w / 2}" y="${box.h / 2}" class="nodata" text-anchor="middle">No data</text>`);
  shownLines.forEach((line, i) => {
    let x = 10;
    const y = box.h - 10 - (shownLines.length - 1 - i) * 17;
    for (const item of line.items) {
      parts.push(`<rect x="${x}" y="${y - 5}" width="14" height="3" fill="${item.color}"/>`);
      parts.push(`<text x="${x + 19}" y="${y}" class="legend">${esc(item.name)}</text>`);
      x += item.width;
    }
  });
  return frame(panel, box, parts.join(''));
}

/** Consecutive finite points: a gap (no value at a step) breaks a line, as in Grafana. */
function runs(points) {
  const out = [];
  let current = [];
  for (const p of points) {
    if (Number.isFinite(p[1])) current.push(p);
    else if (current.length > 0) {
      out.push(current);
      current = [];
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

function stat(panel, series) {
  const box = panelBox(panel.gridPos);
  const defaults = panel.fieldConfig?.defaults ?? {};
  const points = (series[0]?.points ?? []).filter(([, v]) => Number.isFinite(v));
  const last = points[points.length - 1]?.[1];
  const steps = defaults.thresholds?.steps ?? [{ color: 'green', value: null }];
  const color = last === undefined ? '#ccccdc' : (NAMED[[...steps].reverse().find((s) => s.value === null || last >= s.value)?.color] ?? NAMED.green);
  const parts = [];
  if (points.length > 1) {
    const min = Math.min(...points.map(([, v]) => v), 0);
    const max = Math.max(...points.map(([, v]) => v));
    const t0 = points[0][0];
    const t1 = points[points.length - 1][0];
    const sx = (t) => ((t - t0) / (t1 - t0 || 1)) * box.w;
    const sy = (v) => box.h - 4 - ((v - min) / (max - min || 1)) * (box.h * 0.45);
    const line = points.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`);
    parts.push(`<polygon points="0,${box.h} ${line.join(' ')} ${box.w},${box.h}" fill="${color}" fill-opacity="0.15"/>`);
    parts.push(`<polyline points="${line.join(' ')}" fill="none" stroke="${color}" stroke-width="1.5" stroke-opacity="0.7"/>`);
  }
  const text = last === undefined ? 'No data' : formatValue(last, defaults.unit, defaults.decimals);
  parts.push(`<text x="${box.w / 2}" y="${box.h / 2 + 16}" class="stat" fill="${color}" text-anchor="middle">${esc(text)}</text>`);
  return frame(panel, box, parts.join(''));
}

function frame(panel, box, inner) {
  return `<svg class="panel" style="left:${box.x}px;top:${box.y}px" width="${box.w}" height="${box.h}" viewBox="0 0 ${box.w} ${box.h}">
<rect x="0.5" y="0.5" width="${box.w - 1}" height="${box.h - 1}" rx="3" class="frame"/>
<text x="10" y="21" class="title">${esc(panel.title)}</text>${inner}</svg>`;
}

function row(panel) {
  const box = panelBox(panel.gridPos);
  const hidden = panel.collapsed ? ` <span class="count">(${panel.panels.length} panel${panel.panels.length === 1 ? '' : 's'})</span>` : '';
  return `<div class="row" style="left:${box.x}px;top:${box.y}px;width:${box.w}px">${panel.collapsed ? '▸' : '▾'} ${esc(panel.title)}${hidden}</div>`;
}

/**
 * The page: `results` maps a panel id to its series (`[{ name, points }]`, legends resolved);
 * `range` is `{ start, end }` in seconds; `caption` says what the picture is.
 */
export function renderPage(dashboard, results, range, { variables, caption }) {
  const bodies = dashboard.panels.map((panel) => {
    if (panel.type === 'row') return row(panel);
    const series = results.get(panel.id) ?? [];
    return panel.type === 'stat' ? stat(panel, series) : timeseries(panel, series, range);
  });
  const bottom = Math.max(...dashboard.panels.map((p) => panelBox(p.gridPos).y + panelBox(p.gridPos).h));
  const height = Math.ceil(bottom + 52);
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${esc(dashboard.title)}</title><style>
body{margin:0;background:#111217;color:#ccccdc;font-family:"DejaVu Sans","Liberation Sans",sans-serif;width:${PAGE_WIDTH}px;height:${height}px;position:relative;overflow:hidden}
.head{position:absolute;left:${PAD}px;top:12px;right:${PAD}px;display:flex;gap:18px;align-items:baseline;font-size:13px}
.head h1{font-size:19px;font-weight:500;margin:0 12px 0 0;color:#d8d9da}
.var{background:#181b1f;border:1px solid #2c3235;border-radius:2px;padding:4px 8px}.var b{color:#6e9fff;font-weight:normal;margin-right:6px}
.range{margin-left:auto}
.panel{position:absolute;overflow:hidden}
.frame{fill:#181b1f;stroke:#2c3235}
.title{fill:#d8d9da;font-size:13px;font-weight:500}
.tick{fill:#8e8e99;font-size:10.5px}.legend{fill:#ccccdc;font-size:11px}
.grid{stroke:#2c3235;stroke-width:1}
.stat{font-size:30px;font-weight:500}.nodata{fill:#8e8e99;font-size:14px}
.row{position:absolute;height:${CELL}px;line-height:${CELL}px;font-size:15px;font-weight:500;color:#d8d9da;border-bottom:1px solid #2c3235}
.row .count{color:#8e8e99;font-size:12px;font-weight:normal}
.caption{position:absolute;left:${PAD}px;right:${PAD}px;top:${height - 40}px;font-size:12px;color:#8e8e99}
</style></head><body>
<div class="head"><h1>${esc(dashboard.title)}</h1>${variables.map(([k, v]) => `<span class="var"><b>${esc(k)}</b>${esc(v)}</span>`).join('')}<span class="range">${esc(clock(range.start))} to ${esc(clock(range.end))} UTC</span></div>
${bodies.join('\n')}
<div class="caption">${esc(caption)}</div>
</body></html>`;
  return { html, width: PAGE_WIDTH, height };
}
