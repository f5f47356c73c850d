// The retry helper's policy (pure): which errors are retried, after how long, and when it stops.
import { describe, expect, it } from 'vitest';
import {
  AgentConnectionLostError,
  AgentDialTimeoutError,
  AgentDisconnectedError,
  AgentResponseTimeoutError,
  AgentgateError,
  type AgentgateErrorInit,
  AgentUnreachableError,
  backoffMs,
  DatabaseUnavailableError,
  DEFAULT_RETRY_POLICY,
  ERROR_CATALOGUE,
  InternalError,
  OverloadedError,
  RateLimitedError,
  REFUSED_BEFORE_SENDING,
  retryDecision,
  ShuttingDownError,
  WorkspaceChangedError,
  type ErrorCode,
  withRetry,
  type RetryDecision,
  type RetryPolicy,
} from '../../src/client/index.js';

const policy: RetryPolicy = { budgetMs: 5_000, maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 1_000 };
const gate = (cls: new (init: Omit<AgentgateErrorInit, 'code'>) => AgentgateError, extra: { retryAfter?: number; method?: string; proxied?: boolean } = {}) =>
  new cls({ status: 502, detail: 'd', method: 'POST', proxied: false, ...extra });

interface Row {
  name: string;
  error: unknown;
  attempt?: number;
  elapsedMs?: number;
  random?: number;
  policy?: Partial<RetryPolicy>;
  expected: RetryDecision;
}

const rows: Row[] = [
  { name: 'a retryable gate error, first attempt, draw 0.5', error: gate(AgentUnreachableError), expected: { retry: true, delayMs: 50 } },
  { name: 'the bound doubles per attempt', error: gate(AgentUnreachableError), attempt: 3, random: 0.5, expected: { retry: true, delayMs: 200 } },
  { name: 'the bound stops at maxDelayMs', error: gate(AgentUnreachableError), attempt: 3, random: 0.99, policy: { maxDelayMs: 150, maxAttempts: 9 }, expected: { retry: true, delayMs: 148 } },
  { name: 'Retry-After is a floor, with up to a fifth more', error: gate(AgentUnreachableError, { retryAfter: 2 }), random: 0, expected: { retry: true, delayMs: 2_000 } },
  { name: 'Retry-After with the largest jitter', error: gate(AgentUnreachableError, { retryAfter: 2 }), random: 0.999, expected: { retry: true, delayMs: 2_399 } },
  { name: 'Retry-After 0 still jitters over the base delay', error: gate(AgentUnreachableError, { retryAfter: 0 }), random: 0.5, expected: { retry: true, delayMs: 10 } },
  { name: 'a non-retryable code', error: gate(AgentDisconnectedError), expected: { retry: false, reason: 'not-retryable' } },
  { name: 'not an AgentgateError', error: new TypeError('bug'), expected: { retry: false, reason: 'not-agentgate-error' } },
  { name: 'an abort', error: new DOMException('aborted', 'AbortError'), expected: { retry: false, reason: 'not-agentgate-error' } },
  { name: 'attempts used up', error: gate(AgentUnreachableError), attempt: 4, expected: { retry: false, reason: 'attempts' } },
  { name: 'the wait would end past the budget', error: gate(AgentUnreachableError, { retryAfter: 1 }), elapsedMs: 4_100, random: 0, expected: { retry: false, reason: 'budget' } },
  { name: 'the wait ends within the budget', error: gate(AgentUnreachableError, { retryAfter: 1 }), elapsedMs: 3_900, random: 0, expected: { retry: true, delayMs: 1_000 } },
  { name: 'proxied POST whose connection was lost: not repeated', error: gate(AgentConnectionLostError, { proxied: true, method: 'POST' }), expected: { retry: false, reason: 'not-idempotent' } },
  { name: 'proxied PATCH that timed out at the agent: not repeated', error: gate(AgentResponseTimeoutError, { proxied: true, method: 'patch' }), expected: { retry: false, reason: 'not-idempotent' } },
  { name: 'proxied PATCH the gate refused before the agent: repeated', error: gate(AgentUnreachableError, { proxied: true, method: 'patch' }), expected: { retry: true, delayMs: 50 } },
  ...[ShuttingDownError, OverloadedError, RateLimitedError, DatabaseUnavailableError, AgentUnreachableError, AgentDialTimeoutError, WorkspaceChangedError].map(
    (cls): Row => ({ name: `proxied POST refused with ${cls.code}: never sent, so repeated`, error: gate(cls, { proxied: true, method: 'POST' }), expected: { retry: true, delayMs: 50 } }),
  ),
  { name: 'proxied POST refused before sending, even when the caller says it is not idempotent', error: gate(ShuttingDownError, { proxied: true, method: 'POST' }), policy: { idempotent: false }, expected: { retry: true, delayMs: 50 } },
  { name: 'proxied POST with INTERNAL (a bug, anywhere): not repeated', error: gate(InternalError, { proxied: true, method: 'POST' }), expected: { retry: false, reason: 'not-idempotent' } },
  { name: 'proxied POST with a retryable code newer than the client: not repeated', error: new AgentgateError({ code: 'NEW_CODE', status: 503, detail: 'd', retryable: true, proxied: true, method: 'POST' }), expected: { retry: false, reason: 'not-idempotent' } },
  { name: 'proxied POST with UNEXPECTED_RESPONSE 502: not repeated', error: new AgentgateError({ code: 'UNEXPECTED_RESPONSE', status: 502, detail: 'd', proxied: true, method: 'POST' }), expected: { retry: false, reason: 'not-idempotent' } },
  { name: 'proxied GET with UNEXPECTED_RESPONSE 502: repeated', error: new AgentgateError({ code: 'UNEXPECTED_RESPONSE', status: 502, detail: 'd', proxied: true, method: 'GET' }), expected: { retry: true, delayMs: 50 } },
  { name: 'proxied GET: repeated', error: gate(AgentConnectionLostError, { proxied: true, method: 'GET' }), expected: { retry: true, delayMs: 50 } },
  { name: 'proxied PUT and DELETE are idempotent', error: gate(AgentConnectionLostError, { proxied: true, method: 'DELETE' }), expected: { retry: true, delayMs: 50 } },
  { name: 'proxied POST the caller vouches for', error: gate(AgentConnectionLostError, { proxied: true, method: 'POST' }), policy: { idempotent: true }, expected: { retry: true, delayMs: 50 } },
  { name: 'proxied GET the caller says is not idempotent', error: gate(AgentConnectionLostError, { proxied: true, method: 'GET' }), policy: { idempotent: false }, expected: { retry: false, reason: 'not-idempotent' } },
  { name: 'conn() is always safe to repeat', error: gate(AgentUnreachableError, { proxied: false, method: 'POST' }), policy: { idempotent: false }, expected: { retry: true, delayMs: 50 } },
  { name: 'an unknown code marked retryable', error: new AgentgateError({ code: 'NEW_CODE', status: 503, detail: 'd', retryable: true }), expected: { retry: true, delayMs: 50 } },
  { name: 'UNEXPECTED_RESPONSE 502 from a proxy in between', error: new AgentgateError({ code: 'UNEXPECTED_RESPONSE', status: 502, detail: 'd' }), expected: { retry: true, delayMs: 50 } },
  { name: 'GATE_UNREACHABLE (no answer at all)', error: new AgentgateError({ code: 'GATE_UNREACHABLE', status: 0, detail: 'd' }), expected: { retry: true, delayMs: 50 } },
  { name: 'GATE_UNREACHABLE of a proxied POST', error: new AgentgateError({ code: 'GATE_UNREACHABLE', status: 0, detail: 'd', proxied: true, method: 'POST' }), expected: { retry: false, reason: 'not-idempotent' } },
  { name: 'UPGRADE_FAILED (a limit of the gate or of the agent)', error: new AgentgateError({ code: 'UPGRADE_FAILED', status: 0, detail: 'd', proxied: true, method: 'GET' }), expected: { retry: true, delayMs: 50 } },
  { name: 'UNEXPECTED_RESPONSE 404', error: new AgentgateError({ code: 'UNEXPECTED_RESPONSE', status: 404, detail: 'd' }), expected: { retry: false, reason: 'not-retryable' } },
];

describe('retryDecision', () => {
  it.each(rows)('$name', (row) => {
    const decision = retryDecision(
      { error: row.error, attempt: row.attempt ?? 1, elapsedMs: row.elapsedMs ?? 0, random: row.random ?? 0.5 },
      { ...policy, ...row.policy },
    );
    expect(decision).toEqual(row.expected);
  });

  it('places every retryable catalogue code: refused before sending, or possibly run at the agent', () => {
    const mayHaveRun = ['AGENT_CONNECTION_LOST', 'AGENT_RESPONSE_TIMEOUT', 'INTERNAL', 'NOT_READY'];
    const retryable = (Object.keys(ERROR_CATALOGUE) as ErrorCode[]).filter((code) => ERROR_CATALOGUE[code].retryable);
    expect([...REFUSED_BEFORE_SENDING, ...mayHaveRun].sort()).toEqual(retryable.sort());
  });

  it('backoff stays within its bound for every draw', () => {
    for (let attempt = 1; attempt <= 8; attempt += 1) {
      for (const random of [0, 0.25, 0.5, 0.999999]) {
        const delay = backoffMs(attempt, policy, random);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1)));
      }
    }
  });

  it('has defaults that retry', () => {
    expect(DEFAULT_RETRY_POLICY.maxAttempts).toBeGreaterThan(1);
    expect(retryDecision({ error: gate(AgentUnreachableError), attempt: 1, elapsedMs: 0, random: 0 }, DEFAULT_RETRY_POLICY).retry).toBe(true);
  });
});

describe('withRetry', () => {
  it('retries a retryable error, then returns the success', async () => {
    const seen: number[] = [];
    const result = await withRetry(
      async ({ attempt }) => {
        seen.push(attempt);
        if (attempt < 3) throw gate(AgentUnreachableError);
        return 'ok';
      },
      { baseDelayMs: 1, maxAttempts: 5 },
    );
    expect(result).toBe('ok');
    expect(seen).toEqual([1, 2, 3]);
  });

  it('throws the last error when the attempts run out, having told onRetry of each wait', async () => {
    const waits: Array<{ attempt: number; code: string }> = [];
    const last = gate(RateLimitedError);
    let calls = 0;
    const run = withRetry(
      async () => {
        calls += 1;
        throw calls === 2 ? last : gate(AgentUnreachableError);
      },
      { baseDelayMs: 1, maxAttempts: 2, onRetry: ({ attempt, error }) => waits.push({ attempt, code: error.code }) },
    );
    await expect(run).rejects.toBe(last);
    expect(waits).toEqual([{ attempt: 1, code: 'AGENT_UNREACHABLE' }]);
  });

  it('does not retry what the policy refuses', async () => {
    let calls = 0;
    const lost = gate(AgentConnectionLostError, { proxied: true, method: 'POST' });
    await expect(
      withRetry(async () => {
        calls += 1;
        throw lost;
      }),
    ).rejects.toBe(lost);
    expect(calls).toBe(1);
  });

  it('rejects with the signal’s reason when aborted during a wait, without another attempt', async () => {
    const controller = new AbortController();
    let calls = 0;
    const run = withRetry(
      async () => {
        calls += 1;
        setTimeout(() => controller.abort(), 5);
        throw gate(AgentUnreachableError, { retryAfter: 30 });
      },
      { signal: controller.signal, budgetMs: 60_000 },
    );
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(calls).toBe(1);
  });

  it('does not start when the signal is already aborted', async () => {
    let calls = 0;
    const reason = new Error('caller left');
    await expect(
      withRetry(
        async () => {
          calls += 1;
          return 1;
        },
        { signal: AbortSignal.abort(reason) },
      ),
    ).rejects.toBe(reason);
    expect(calls).toBe(0);
  });
});
