// The metric and label names a PromQL expression refers to, for checking a dashboard's queries
// against what the service exports. A tokenizer and a walk over its tokens, not a full parser:
// it knows functions, aggregations with their `by`/`without` clauses, keywords, label matchers,
// strings, ranges and Grafana's `$variables`, and refuses what it does not know.

export interface SelectorRef {
  /** The series name as written (`agentgate_dial_seconds_bucket`, suffix kept). */
  metric: string;
  /** Label names used in its matchers. */
  labels: string[];
}

export interface GroupingRef {
  /** `by`/`without` of an aggregation, or `matching` for `on`/`ignoring`/`group_left`/`group_right`. */
  clause: 'by' | 'without' | 'matching';
  labels: string[];
  /** The series names the clause applies to: those inside the aggregation (or the whole expression). */
  metrics: string[];
}

export interface PromqlNames {
  selectors: SelectorRef[];
  groupings: GroupingRef[];
}

type Token = { kind: 'ident' | 'string' | 'number' | 'range' | 'variable' | 'op' | 'punct'; text: string };

const AGGREGATIONS = new Set([
  'sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio',
]);
/** Keywords followed by a label list that applies to both sides of a binary operation. */
const MATCHING = new Set(['on', 'ignoring', 'group_left', 'group_right']);
/** Words that are neither metrics nor functions. */
const KEYWORDS = new Set(['bool', 'and', 'or', 'unless', 'offset', 'atan2', 'inf', 'nan']);
const MATCHER_OPS = new Set(['=', '!=', '=~', '!~']);

export function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const rest = () => expr.slice(i);
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i += 1;
    } else if (c === '#') {
      const end = expr.indexOf('\n', i);
      i = end === -1 ? expr.length : end;
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < expr.length && expr[j] !== c) j += c !== '`' && expr[j] === '\\' ? 2 : 1;
      if (j >= expr.length) throw new Error(`unterminated string at ${i} in ${expr}`);
      tokens.push({ kind: 'string', text: expr.slice(i, j + 1) });
      i = j + 1;
    } else if (c === '[') {
      // A range or subquery (`[5m]`, `[$__rate_interval]`, `[1h:1m]`): names nothing.
      const end = expr.indexOf(']', i);
      if (end === -1) throw new Error(`unterminated range at ${i} in ${expr}`);
      tokens.push({ kind: 'range', text: expr.slice(i, end + 1) });
      i = end + 1;
    } else {
      const match =
        /^\$(?:\{\w+(?::\w+)?\}|\w+)/.exec(rest()) ??
        /^(?:0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:[a-zA-Z]+\d*)*)/.exec(rest()) ??
        /^[a-zA-Z_:][\w:]*/.exec(rest()) ??
        /^(?:==|!=|=~|!~|<=|>=|[-+*/%^<>=@])/.exec(rest()) ??
        /^[(){},]/.exec(rest());
      if (!match) throw new Error(`unexpected "${c}" at ${i} in ${expr}`);
      const text = match[0];
      const kind: Token['kind'] =
        text.startsWith('$') ? 'variable' : /^[\d.]/.test(text) ? 'number' : /^[a-zA-Z_:]/.test(text) ? 'ident' : /^[(){},]$/.test(text) ? 'punct' : 'op';
      tokens.push({ kind, text });
      i += text.length;
    }
  }
  return tokens;
}

interface Frame {
  /** An aggregation's prefix `by`/`without` clause; undefined for other parentheses. */
  grouping: { clause: 'by' | 'without'; labels: string[] } | undefined;
  aggregation: boolean;
  /** Index into the selectors found so far where this frame began. */
  from: number;
}

export function promqlNames(expr: string): PromqlNames {
  const tokens = tokenize(expr);
  const selectors: SelectorRef[] = [];
  const groupings: GroupingRef[] = [];
  const wholeExpression: string[][] = [];
  const stack: Frame[] = [];
  let closed: { frame: Frame; metrics: string[] } | undefined;
  let i = 0;
  const peek = (k = 0) => tokens[i + k];
  const expect = (text: string) => {
    const token = tokens[i];
    if (token?.text !== text) throw new Error(`expected "${text}" at token ${i} (${token?.text ?? 'end'}) in ${expr}`);
    i += 1;
  };
  const labelList = (): string[] => {
    expect('(');
    const labels: string[] = [];
    while (peek()?.text !== ')') {
      const token = peek();
      if (token?.kind !== 'ident') throw new Error(`expected a label name at token ${i} in ${expr}`);
      labels.push(token.text);
      i += 1;
      if (peek()?.text === ',') i += 1;
    }
    expect(')');
    return labels;
  };
  const matchers = (): Array<{ label: string; value: string }> => {
    expect('{');
    const found: Array<{ label: string; value: string }> = [];
    while (peek()?.text !== '}') {
      const label = peek();
      const op = peek(1);
      const value = peek(2);
      if (label?.kind !== 'ident' || !op || !MATCHER_OPS.has(op.text) || value?.kind !== 'string') {
        throw new Error(`expected a label matcher at token ${i} in ${expr}`);
      }
      found.push({ label: label.text, value: value.text.slice(1, -1) });
      i += 3;
      if (peek()?.text === ',') i += 1;
    }
    expect('}');
    return found;
  };

  while (i < tokens.length) {
    const token = tokens[i]!;
    const next = peek(1);
    if (token.kind === 'ident' && (token.text === 'by' || token.text === 'without')) {
      // The postfix form, `sum(x) by (label)`: it names the aggregation just closed.
      i += 1;
      const labels = labelList();
      if (!closed?.frame.aggregation || closed.frame.grouping !== undefined) throw new Error(`"${token.text}" without an aggregation in ${expr}`);
      groupings.push({ clause: token.text === 'by' ? 'by' : 'without', labels, metrics: closed.metrics });
      closed = undefined;
    } else if (token.kind === 'ident' && MATCHING.has(token.text)) {
      i += 1;
      if (peek()?.text === '(') wholeExpression.push(labelList());
    } else if (token.kind === 'ident' && KEYWORDS.has(token.text.toLowerCase())) {
      i += 1;
    } else if (token.kind === 'ident' && AGGREGATIONS.has(token.text) && (next?.text === 'by' || next?.text === 'without')) {
      i += 2;
      const grouping = { clause: next.text === 'by' ? ('by' as const) : ('without' as const), labels: labelList() };
      expect('(');
      stack.push({ grouping, aggregation: true, from: selectors.length });
    } else if (token.kind === 'ident' && next?.text === '(') {
      i += 2;
      stack.push({ grouping: undefined, aggregation: AGGREGATIONS.has(token.text), from: selectors.length });
    } else if (token.kind === 'ident' || (token.kind === 'punct' && token.text === '{')) {
      let metric = token.kind === 'ident' ? token.text : undefined;
      if (token.kind === 'ident') i += 1;
      const found = peek()?.text === '{' ? matchers() : [];
      const byName = found.find((m) => m.label === '__name__');
      if (byName) {
        if (metric !== undefined || !/^[a-zA-Z_:][\w:]*$/.test(byName.value)) throw new Error(`unsupported __name__ matcher in ${expr}`);
        metric = byName.value;
      }
      if (metric === undefined) throw new Error(`a selector without a metric name in ${expr}`);
      selectors.push({ metric, labels: found.filter((m) => m.label !== '__name__').map((m) => m.label) });
    } else if (token.text === '(') {
      i += 1;
      stack.push({ grouping: undefined, aggregation: false, from: selectors.length });
    } else if (token.text === ')') {
      i += 1;
      const frame = stack.pop();
      if (!frame) throw new Error(`unbalanced ")" in ${expr}`);
      const metrics = selectors.slice(frame.from).map((s) => s.metric);
      if (frame.grouping !== undefined) groupings.push({ ...frame.grouping, metrics });
      closed = { frame, metrics };
      continue;
    } else if (token.kind === 'punct' && token.text === '}') {
      throw new Error(`unbalanced "}" in ${expr}`);
    } else {
      i += 1; // numbers, strings (function arguments), ranges, variables, operators, commas
    }
    closed = undefined;
  }
  if (stack.length > 0) throw new Error(`unbalanced "(" in ${expr}`);
  const all = selectors.map((s) => s.metric);
  for (const labels of wholeExpression) groupings.push({ clause: 'matching', labels, metrics: all });
  return { selectors, groupings };
}
