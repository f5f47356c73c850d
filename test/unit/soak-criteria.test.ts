// The soak run's pass/fail rules (test/soak/criteria.ts): answers judged against contract §6, and
// growth without bound told from noise.
import { describe, expect, it } from 'vitest';
import { classifyAnswer, judgeGrowth, type Point } from '../soak/criteria.js';

const problem = (status: number, code: string) => ({
  status,
  headers: { 'content-type': 'application/problem+json; charset=utf-8' },
  text: JSON.stringify({ status, code }),
  proxied: false,
});

describe('classifyAnswer', () => {
  it('passes documented codes and the agent’s own errors', () => {
    expect(classifyAnswer(problem(503, 'DATABASE_UNAVAILABLE'))).toEqual({ outcome: '503 DATABASE_UNAVAILABLE' });
    expect(classifyAnswer({ status: 200, headers: {}, text: '{}', proxied: false })).toEqual({ outcome: 'ok' });
    expect(classifyAnswer({ status: 500, headers: { 'x-agentgate-upstream': 'agent' }, text: 'boom', proxied: true })).toEqual({ outcome: 'agent 500' });
    expect(classifyAnswer({ status: 200, headers: { 'x-agentgate-degraded': 'database' }, text: '{}', proxied: false })).toEqual({ outcome: 'ok degraded' });
  });

  it('flags INTERNAL, undocumented pairs, code-less errors and proxied successes not from the agent', () => {
    expect(classifyAnswer(problem(500, 'INTERNAL')).defect).toBe('INTERNAL');
    expect(classifyAnswer(problem(500, 'DATABASE_UNAVAILABLE')).defect).toMatch(/does not document/);
    expect(classifyAnswer(problem(503, 'SOMETHING_NEW')).defect).toMatch(/does not document/);
    expect(classifyAnswer({ status: 502, headers: {}, text: 'Bad Gateway', proxied: false }).defect).toMatch(/without a problem code/);
    expect(classifyAnswer({ status: 503, headers: { 'content-type': 'application/json' }, text: '{"code":"OVERLOADED"}', proxied: false }).defect).toMatch(/problem\+json/);
    expect(classifyAnswer({ status: 200, headers: {}, text: '{}', proxied: true }).defect).toMatch(/x-agentgate-upstream/);
  });
});

describe('judgeGrowth', () => {
  const rule = { warmupMs: 10_000, ratio: 1.3, slack: 32, cap: 512 };
  const series = (n: number, f: (i: number) => number): Point[] => Array.from({ length: n }, (_, i) => ({ t: i * 2_000, v: f(i) }));

  it('accepts a flat series with spikes and a warm-up climb', () => {
    const v = judgeGrowth(series(60, (i) => (i < 5 ? 60 + i * 10 : i % 7 === 0 ? 180 : 110)), rule);
    expect(v.ok).toBe(true);
  });

  it('fails a steady climb', () => {
    const v = judgeGrowth(series(60, (i) => 100 + i * 2), rule);
    expect(v.ok).toBe(false);
    expect(v.detail).toMatch(/grew/);
  });

  it('fails any sample over the cap, and gives no growth verdict on too few samples', () => {
    expect(judgeGrowth(series(60, (i) => (i === 3 ? 600 : 100)), rule).ok).toBe(false);
    const short = judgeGrowth(series(6, (i) => 50 * (i + 1)), rule);
    expect(short.ok).toBe(true);
    expect(short.detail).toMatch(/too few/);
  });
});
