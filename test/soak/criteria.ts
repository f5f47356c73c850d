// Pass/fail rules of the soak run, kept apart from the driver so that they can be unit tested:
// how an answer is classified against contract §6, and when a resource counts as growing without
// bound.

/** contract §6: every documented code and its status. Anything else from the gate is a defect. */
export const DOCUMENTED_CODES: Readonly<Record<string, number>> = {
  INVALID_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  WORKSPACE_NOT_FOUND: 404,
  AGENT_NOT_FOUND: 404,
  NOT_FOUND: 404,
  WORKSPACE_HAS_NO_AGENT: 409,
  AGENT_DISCONNECTED: 409,
  AGENT_NEVER_CONNECTED: 409,
  WORKSPACE_CHANGED: 409,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  AGENT_UNREACHABLE: 502,
  AGENT_CONNECTION_LOST: 502,
  DATABASE_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  NOT_READY: 503,
  OVERLOADED: 503,
  AGENT_DIAL_TIMEOUT: 504,
  AGENT_RESPONSE_TIMEOUT: 504,
  INTERNAL: 500,
};

export interface Answer {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** True for `/workspaces/:id/conn/<path>` calls. */
  proxied: boolean;
}

export interface Classified {
  /** `ok`, `ok degraded`, `agent <status>` or `<status> <code>`. */
  outcome: string;
  /** Set when the answer breaks the contract. */
  defect?: string;
}

const header = (a: Answer, name: string): string | undefined => {
  const v = a.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

export function classifyAnswer(a: Answer): Classified {
  const degraded = header(a, 'x-agentgate-degraded') === 'database' ? ' degraded' : '';
  if (header(a, 'x-agentgate-upstream') === 'agent') {
    // The agent's own answer, passed through: its errors are not the gate's.
    return { outcome: a.status < 400 ? `ok${degraded}` : `agent ${a.status}${degraded}` };
  }
  if (a.status >= 200 && a.status < 300) {
    if (a.proxied) return { outcome: `${a.status} (not from the agent)`, defect: 'a proxied success without x-agentgate-upstream' };
    return { outcome: `ok${degraded}` };
  }
  let code: unknown;
  try {
    code = (JSON.parse(a.text) as { code?: unknown }).code;
  } catch {
    code = undefined;
  }
  if (typeof code !== 'string') return { outcome: `${a.status} (no code)`, defect: 'a gate error without a problem code' };
  const outcome = `${a.status} ${code}`;
  if (!String(header(a, 'content-type')).startsWith('application/problem+json')) {
    return { outcome, defect: 'a gate error that is not application/problem+json' };
  }
  if (code === 'INTERNAL') return { outcome, defect: 'INTERNAL' };
  if (DOCUMENTED_CODES[code] !== a.status) return { outcome, defect: 'a code or status contract §6 does not document' };
  return { outcome };
}

export interface Point {
  /** Milliseconds since the start of the run. */
  t: number;
  v: number;
}

export interface GrowthRule {
  /** Samples before this are warm-up (heaps and pools filling) and are not compared. */
  warmupMs: number;
  /** The last third may exceed the first by this factor... */
  ratio: number;
  /** ...plus this much, before it counts as growth. */
  slack: number;
  /** No sample may exceed this, warm-up included. */
  cap: number;
  /** Fewer samples after warm-up than this: no growth verdict, only the cap. */
  minSamples?: number;
}

export interface GrowthVerdict {
  ok: boolean;
  /** Median of the first third after warm-up, of the last third, and the largest sample. */
  first: number | undefined;
  last: number | undefined;
  max: number;
  detail: string;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Growth without bound: the median of the last third of the samples taken after warm-up is
 * above `ratio` x the median of the first third plus `slack`; or any sample is above `cap`.
 * Medians rather than means: a database fault can spike a sample or two (sockets piling up
 * while queries wait), which is not growth; a leak moves the whole last third.
 */
export function judgeGrowth(points: Point[], rule: GrowthRule): GrowthVerdict {
  const max = points.reduce((m, p) => Math.max(m, p.v), 0);
  const steady = points.filter((p) => p.t >= rule.warmupMs);
  const overCap = max > rule.cap;
  if (steady.length < (rule.minSamples ?? 6)) {
    return {
      ok: !overCap,
      first: undefined,
      last: undefined,
      max,
      detail: `${steady.length} samples after warm-up: too few to judge growth${overCap ? `; max ${max} over the cap ${rule.cap}` : ''}`,
    };
  }
  const third = Math.max(1, Math.floor(steady.length / 3));
  const first = median(steady.slice(0, third).map((p) => p.v));
  const last = median(steady.slice(-third).map((p) => p.v));
  const limit = first * rule.ratio + rule.slack;
  const grew = last > limit;
  const problems = [grew ? `grew: last third ${round(last)} > limit ${round(limit)} (first third ${round(first)})` : '', overCap ? `max ${round(max)} over the cap ${rule.cap}` : '']
    .filter(Boolean)
    .join('; ');
  return {
    ok: !grew && !overCap,
    first,
    last,
    max,
    detail: problems || `first third ${round(first)}, last third ${round(last)} (limit ${round(limit)}), max ${round(max)} (cap ${rule.cap})`,
  };
}

const round = (v: number) => Math.round(v * 10) / 10;
