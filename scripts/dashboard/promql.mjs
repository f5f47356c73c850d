// The PromQL subset deploy/grafana/agentgate.json uses, evaluated over scrapes kept in memory,
// so that its panels can be drawn from a real run without Prometheus: selectors with label
// matchers, rate() and increase() (with Prometheus's extrapolation), sum/max/min/avg [by (...)],
// histogram_quantile() (Prometheus's bucket interpolation), and arithmetic between two vectors
// with the same labels or a vector and a number. Anything else is refused by name.

const AGGREGATIONS = new Set(['sum', 'max', 'min', 'avg']);
const RANGE_FUNCTIONS = new Set(['rate', 'increase']);
/** How far back an instant selector looks for a sample, as Prometheus's default. */
const LOOKBACK_SECONDS = 300;

// ---- parsing -------------------------------------------------------------------------------

function tokenize(expr) {
  const tokens = [];
  const patterns = [
    ['space', /^\s+/],
    ['string', /^"(?:[^"\\]|\\.)*"/],
    ['duration', /^\[(\d+(?:ms|s|m|h|d))\]/],
    ['number', /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/],
    ['ident', /^[a-zA-Z_:][\w:]*/],
    ['op', /^(?:=~|!~|!=|[=+\-*/])/],
    ['punct', /^[(){},]/],
  ];
  let rest = expr;
  while (rest.length > 0) {
    const found = patterns.map(([kind, re]) => [kind, re.exec(rest)]).find(([, m]) => m);
    if (!found) throw new Error(`unsupported PromQL at "${rest.slice(0, 20)}" in ${expr}`);
    const [kind, match] = found;
    if (kind !== 'space') tokens.push({ kind, text: match[0], value: match[1] });
    rest = rest.slice(match[0].length);
  }
  return tokens;
}

export function parseDuration(text) {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (!m) throw new Error(`unsupported duration ${text}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
}

/** Parses an expression of the subset into a small tree; throws on anything outside it. */
export function parse(expr) {
  const tokens = tokenize(expr);
  let i = 0;
  const peek = () => tokens[i];
  const take = (text) => {
    const token = tokens[i];
    if (text !== undefined && token?.text !== text) throw new Error(`expected "${text}" at "${token?.text ?? 'end'}" in ${expr}`);
    i += 1;
    return token;
  };
  const labelList = () => {
    take('(');
    const labels = [];
    while (peek()?.text !== ')') {
      labels.push(take().text);
      if (peek()?.text === ',') take(',');
    }
    take(')');
    return labels;
  };
  const selector = (name) => {
    const matchers = [];
    if (peek()?.text === '{') {
      take('{');
      while (peek()?.text !== '}') {
        const label = take().text;
        const op = take().text;
        const value = JSON.parse(take().text);
        if (!['=', '!=', '=~', '!~'].includes(op)) throw new Error(`unsupported matcher ${op} in ${expr}`);
        // PromQL regular expressions are anchored at both ends.
        matchers.push({ label, op, value, re: op.endsWith('~') ? new RegExp(`^(?:${value})$`) : undefined });
        if (peek()?.text === ',') take(',');
      }
      take('}');
    }
    const node = { type: 'selector', name, matchers };
    if (peek()?.kind === 'duration') return { type: 'range', selector: node, seconds: parseDuration(take().value) };
    return node;
  };
  const primary = () => {
    const token = take();
    if (!token) throw new Error(`unexpected end of ${expr}`);
    if (token.kind === 'number') return { type: 'number', value: Number(token.text) };
    if (token.text === '(') {
      const inner = expression();
      take(')');
      return inner;
    }
    if (token.kind !== 'ident') throw new Error(`unexpected "${token.text}" in ${expr}`);
    if (AGGREGATIONS.has(token.text)) {
      const by = peek()?.text === 'by' ? (take('by'), labelList()) : undefined;
      take('(');
      const arg = expression();
      take(')');
      if (peek()?.text === 'by') throw new Error(`write "${token.text} by (...) (...)" in ${expr}`);
      return { type: 'aggregate', op: token.text, by, arg };
    }
    if (RANGE_FUNCTIONS.has(token.text)) {
      take('(');
      const arg = expression();
      take(')');
      if (arg.type !== 'range') throw new Error(`${token.text}() needs a range selector in ${expr}`);
      return { type: 'call', fn: token.text, arg };
    }
    if (token.text === 'histogram_quantile') {
      take('(');
      const q = Number(take().text);
      take(',');
      const arg = expression();
      take(')');
      return { type: 'quantile', q, arg };
    }
    if (peek()?.text === '(') throw new Error(`unsupported function ${token.text}() in ${expr}`);
    return selector(token.text);
  };
  // Two levels of precedence, as PromQL's: * and / bind tighter than + and -.
  const binary = (operators, operand) => () => {
    let left = operand();
    while (peek()?.kind === 'op' && operators.includes(peek().text)) {
      const op = take().text;
      left = { type: 'binary', op, left, right: operand() };
    }
    return left;
  };
  const expression = binary(['+', '-'], binary(['*', '/'], primary));
  const tree = expression();
  if (i !== tokens.length) throw new Error(`unexpected "${tokens[i].text}" in ${expr}`);
  return tree;
}

// ---- evaluation ----------------------------------------------------------------------------

/**
 * Scrapes: `[{ t: seconds, series: [{ name, labels: {..}, value }] }]`, in time order, each with
 * the labels Prometheus would attach (job, instance) already on its series.
 */
export class Samples {
  constructor(scrapes) {
    this.scrapes = scrapes;
  }

  /** The last scrape at or before `t`, within the lookback. */
  at(t) {
    let found;
    for (const scrape of this.scrapes) {
      if (scrape.t > t) break;
      found = scrape;
    }
    return found && t - found.t <= LOOKBACK_SECONDS ? found : undefined;
  }

  /** Points of each matching series in the left-open window (t - seconds, t]. */
  window(t, seconds, matches) {
    const bySeries = new Map();
    for (const scrape of this.scrapes) {
      if (scrape.t <= t - seconds) continue;
      if (scrape.t > t) break;
      for (const s of scrape.series) {
        if (!matches(s)) continue;
        const key = seriesKey(s.labels, s.name);
        const entry = bySeries.get(key) ?? { labels: s.labels, points: [] };
        entry.points.push([scrape.t, s.value]);
        bySeries.set(key, entry);
      }
    }
    return [...bySeries.values()];
  }
}

export function seriesKey(labels, name = '') {
  return `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',')}}`;
}

function matcher(node) {
  return (s) =>
    s.name === node.name &&
    node.matchers.every((m) => {
      const value = s.labels[m.label] ?? '';
      if (m.op === '=') return value === m.value;
      if (m.op === '!=') return value !== m.value;
      if (m.op === '=~') return m.re.test(value);
      return !m.re.test(value);
    });
}

/** Prometheus's extrapolatedRate (promql/functions.go) for counters. */
export function extrapolatedDelta(points, rangeStart, rangeEnd, isRate) {
  if (points.length < 2) return undefined;
  const [firstT, firstV] = points[0];
  const [lastT, lastV] = points[points.length - 1];
  let delta = lastV - firstV;
  for (let k = 1; k < points.length; k++) if (points[k][1] < points[k - 1][1]) delta += points[k - 1][1]; // counter reset
  const sampled = lastT - firstT;
  const average = sampled / (points.length - 1);
  const threshold = average * 1.1;
  let toStart = firstT - rangeStart;
  let toEnd = rangeEnd - lastT;
  if (toStart >= threshold) toStart = average / 2;
  // A counter does not extrapolate below zero.
  if (delta > 0 && firstV >= 0) toStart = Math.min(toStart, sampled * (firstV / delta));
  if (toEnd >= threshold) toEnd = average / 2;
  let value = delta * ((sampled + toStart + toEnd) / sampled);
  if (isRate) value /= rangeEnd - rangeStart;
  return value;
}

/** Prometheus's bucketQuantile: linear interpolation inside the bucket the rank falls in. */
export function bucketQuantile(q, buckets) {
  if (q < 0) return -Infinity;
  if (q > 1) return Infinity;
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  if (sorted.length < 2 || sorted[sorted.length - 1].le !== Infinity) return NaN;
  // Rates of neighbouring buckets can be out of order by float error: make them monotonic.
  for (let k = 1; k < sorted.length; k++) sorted[k] = { le: sorted[k].le, count: Math.max(sorted[k].count, sorted[k - 1].count) };
  const total = sorted[sorted.length - 1].count;
  if (!(total > 0)) return NaN;
  let rank = q * total;
  const b = sorted.findIndex((bucket) => bucket.count >= rank);
  if (b === sorted.length - 1) return sorted[sorted.length - 2].le;
  if (b === 0 && sorted[0].le <= 0) return sorted[0].le;
  const start = b === 0 ? 0 : sorted[b - 1].le;
  const below = b === 0 ? 0 : sorted[b - 1].count;
  const end = sorted[b].le;
  const count = sorted[b].count - below;
  rank -= below;
  return start + (end - start) * (rank / count);
}

function group(vector, labelsOf) {
  const groups = new Map();
  for (const s of vector) {
    const labels = labelsOf(s.labels);
    const key = seriesKey(labels);
    const entry = groups.get(key) ?? { labels, values: [] };
    entry.values.push(s.value);
    groups.set(key, entry);
  }
  return [...groups.values()];
}

const pick = (labels, names) => Object.fromEntries(names.filter((n) => labels[n] !== undefined).map((n) => [n, labels[n]]));

/** Evaluates a parsed expression at time `t`: a number, or a vector `[{ labels, value }]`. */
export function evaluate(node, samples, t) {
  switch (node.type) {
    case 'number':
      return node.value;
    case 'selector': {
      const scrape = samples.at(t);
      const matches = matcher(node);
      return (scrape?.series ?? []).filter(matches).map((s) => ({ labels: { __name__: s.name, ...s.labels }, value: s.value }));
    }
    case 'range':
      throw new Error('a range selector outside rate() or increase()');
    case 'call': {
      const { selector, seconds } = node.arg;
      const out = [];
      for (const { labels, points } of samples.window(t, seconds, matcher(selector))) {
        const value = extrapolatedDelta(points, t - seconds, t, node.fn === 'rate');
        if (value !== undefined) out.push({ labels, value }); // the name is dropped, as Prometheus does
      }
      return out;
    }
    case 'aggregate': {
      const arg = vector(evaluate(node.arg, samples, t));
      const reduce = { sum: (v) => v.reduce((a, b) => a + b, 0), max: (v) => Math.max(...v), min: (v) => Math.min(...v), avg: (v) => v.reduce((a, b) => a + b, 0) / v.length }[node.op];
      return group(arg, (labels) => pick(labels, node.by ?? [])).map((g) => ({ labels: g.labels, value: reduce(g.values) }));
    }
    case 'quantile': {
      const arg = vector(evaluate(node.arg, samples, t));
      const groups = new Map();
      for (const s of arg) {
        const { le, __name__: _name, ...rest } = s.labels;
        if (le === undefined) continue;
        const key = seriesKey(rest);
        const entry = groups.get(key) ?? { labels: rest, buckets: [] };
        entry.buckets.push({ le: le === '+Inf' ? Infinity : Number(le), count: s.value });
        groups.set(key, entry);
      }
      return [...groups.values()].map((g) => ({ labels: g.labels, value: bucketQuantile(node.q, g.buckets) }));
    }
    case 'binary': {
      const left = evaluate(node.left, samples, t);
      const right = evaluate(node.right, samples, t);
      const apply = (a, b) => ({ '+': a + b, '-': a - b, '*': a * b, '/': a / b })[node.op];
      const strip = (labels) => {
        const { __name__: _name, ...rest } = labels;
        return rest;
      };
      if (typeof left === 'number' && typeof right === 'number') return apply(left, right);
      if (typeof right === 'number') return left.map((s) => ({ labels: strip(s.labels), value: apply(s.value, right) }));
      if (typeof left === 'number') return right.map((s) => ({ labels: strip(s.labels), value: apply(left, s.value) }));
      // One-to-one matching on the whole label set.
      const byKey = new Map(right.map((s) => [seriesKey(strip(s.labels)), s]));
      return left.flatMap((s) => {
        const other = byKey.get(seriesKey(strip(s.labels)));
        return other ? [{ labels: strip(s.labels), value: apply(s.value, other.value) }] : [];
      });
    }
    default:
      throw new Error(`unknown node ${node.type}`);
  }
}

function vector(value) {
  if (typeof value === 'number') throw new Error('expected a vector, got a number');
  return value;
}

/**
 * A range query, as Grafana asks Prometheus for one: the expression at every step from `start`
 * to `end`. Returns `[{ labels, points: [[t, value]] }]`.
 */
export function queryRange(expr, samples, { start, end, step }) {
  const tree = parse(expr);
  const series = new Map();
  for (let t = start; t <= end + 1e-9; t += step) {
    const result = evaluate(tree, samples, t);
    for (const s of typeof result === 'number' ? [{ labels: {}, value: result }] : result) {
      const key = seriesKey(s.labels);
      const entry = series.get(key) ?? { labels: s.labels, points: [] };
      entry.points.push([t, s.value]);
      series.set(key, entry);
    }
  }
  return [...series.values()];
}

/** The text exposition format's samples: `[{ name, labels, value }]`. */
export function parseExposition(text, extraLabels = {}) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsed exposition line: ${line}`);
    const labels = { ...extraLabels };
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = JSON.parse(`"${l[2]}"`);
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    out.push({ name: m[1], labels, value });
  }
  return out;
}
