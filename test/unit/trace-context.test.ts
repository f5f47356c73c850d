// The W3C Trace Context rules the gate applies to a caller's headers when it does not trace itself
// (pure): which `traceparent` and `tracestate` values are well-formed enough to forward. The
// OpenTelemetry propagator, which reads them when the gate does trace, is the oracle for
// `traceparent`.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseTraceParent } from '@opentelemetry/core';
import { callerTraceHeaders, isTraceparent, isTracestate } from '../../src/tracing/trace-context.js';

const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('traceparent', () => {
  it.each([
    [VALID, true],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', true],
    ['01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more-fields', true],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-', false],
    ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', false],
    ['00-00000000000000000000000000000000-00f067aa0ba902b7-01', false],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', false],
    ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', false],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1', false],
    ['004bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b701', false],
    [`${VALID}, ${VALID}`, false],
    ['', false],
  ])('%j → %s', (value, valid) => {
    expect(isTraceparent(value)).toBe(valid);
  });

  it('agrees with the OpenTelemetry propagator on near-valid values', () => {
    // Valid parts with one of them replaced by something close: the edges the rules draw.
    const part = (n: number) => fc.oneof(hex(n), fc.constant('0'.repeat(n)), fc.stringMatching(new RegExp(`^[0-9a-fA-Fg-]{${n - 1},${n + 1}}$`)));
    const value = fc
      .tuple(fc.oneof(hex(2), fc.constant('ff'), fc.constant('00')), part(32), part(16), fc.oneof(hex(2), part(2)), fc.option(fc.stringMatching(/^-[a-z0-9-]{0,8}$/), { nil: '' }))
      .map(([v, t, p, f, rest]) => `${v}-${t}-${p}-${f}${rest}`);
    fc.assert(
      fc.property(value, (candidate) => {
        expect(isTraceparent(candidate)).toBe(parseTraceParent(candidate) !== null);
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('tracestate', () => {
  it.each([
    ['rojo=00f067aa0ba902b7', true],
    ['rojo=00f067aa0ba902b7,congo=t61rcWkgMzE', true],
    ['rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE', true],
    ['tenant@vendor=value', true],
    ['a=1,,b=2', true],
    ['a=b c', true],
    ['Rojo=1', false],
    ['rojo', false],
    ['=1', false],
    ['rojo=', false],
    ['rojo=a=b', false],
    ['rojo=1,rojo=2', false],
    [Array.from({ length: 33 }, (_, i) => `k${i}=v`).join(','), false],
    [`k=${'v'.repeat(600)}`, false],
  ])('%j → %s', (value, valid) => {
    expect(isTracestate(value)).toBe(valid);
  });
});

describe('callerTraceHeaders', () => {
  it('forwards a valid pair as it came, joins repeated tracestate headers, drops what is malformed', () => {
    expect(callerTraceHeaders(VALID, 'a=1')).toEqual({ traceparent: VALID, tracestate: 'a=1' });
    expect(callerTraceHeaders(VALID, ['a=1', 'b=2'])).toEqual({ traceparent: VALID, tracestate: 'a=1,b=2' });
    expect(callerTraceHeaders(VALID, undefined)).toEqual({ traceparent: VALID });
    expect(callerTraceHeaders(VALID, '')).toEqual({ traceparent: VALID });
    expect(callerTraceHeaders(VALID, 'A=1')).toEqual({ traceparent: VALID });
    expect(callerTraceHeaders(VALID, ['a=1', 'a=2'])).toEqual({ traceparent: VALID });
    expect(callerTraceHeaders(undefined, 'a=1')).toBeUndefined();
    expect(callerTraceHeaders('00-nope', 'a=1')).toBeUndefined();
    expect(callerTraceHeaders([VALID, VALID], 'a=1')).toBeUndefined();
  });

  it('forwards a later version as version 00, without the fields it does not understand', () => {
    const later = `cc-${VALID.slice(3)}-what\tnext-${'x'.repeat(4000)}`;
    expect(isTraceparent(later)).toBe(true);
    expect(callerTraceHeaders(later, 'a=1')).toEqual({ traceparent: VALID, tracestate: 'a=1' });
    expect(callerTraceHeaders(`01-${VALID.slice(3)}`, undefined)).toEqual({ traceparent: VALID });
  });

  it('never yields a tracestate key without a value (headers are spread into requests as they are)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(VALID), fc.string()), fc.option(fc.string(), { nil: undefined }), (parent, state) => {
        const out = callerTraceHeaders(parent, state);
        if (out) expect(Object.values(out).every((v) => typeof v === 'string')).toBe(true);
      }),
    );
  });
});
