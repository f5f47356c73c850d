// The client's errors (agentgate/client): a class for every catalogue code, and how an answer of
// the gate (or of something in between) becomes one.
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE, type ErrorCode } from '../../src/domain/errors.js';
import * as client from '../../src/client/index.js';
import {
  AgentDisconnectedError,
  AgentgateError,
  CLIENT_ERROR_CODES,
  ERROR_CLASSES,
  errorClassFor,
  errorClassName,
  createClient,
} from '../../src/client/index.js';
import { errorFromAnswer, isAgentAnswer, parseRetryAfter, unexpectedAnswer } from '../../src/client/answers.js';

const CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];
const NOW = Date.parse('2026-05-01T12:00:00Z');
const call = { method: 'POST', proxied: false, workspaceId: 'ws-1' };

const problemAnswer = (status: number, body: unknown, headers: Record<string, string> = {}) => ({
  status,
  headers: new Headers({ 'content-type': 'application/problem+json', ...headers }),
  text: typeof body === 'string' ? body : JSON.stringify(body),
});

describe('one class per catalogue code', () => {
  it.each(CODES)('%s has its class, exported under its name, extending AgentgateError', (code) => {
    const name = errorClassName(code);
    const cls = (client as Record<string, unknown>)[name] as (new (init: object) => AgentgateError) & { code: string };
    expect(cls, `agentgate/client exports no ${name}`).toBeTypeOf('function');
    expect(ERROR_CLASSES[name]).toBe(cls);
    expect(errorClassFor(code)).toBe(cls);
    expect(cls.code).toBe(code);
    const error = new cls({ status: ERROR_CATALOGUE[code].status, detail: 'd' });
    expect(error).toBeInstanceOf(AgentgateError);
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe(code);
    expect(error.name).toBe(name);
    expect(error.retryable).toBe(ERROR_CATALOGUE[code].retryable);
  });

  it('has no class beyond the catalogue, and client codes never shadow catalogue codes', () => {
    expect(Object.values(ERROR_CLASSES).map((c) => c.code).sort()).toEqual([...CODES].sort());
    for (const code of Object.keys(CLIENT_ERROR_CODES)) expect(Object.hasOwn(ERROR_CATALOGUE, code), code).toBe(false);
  });

  it('spells class names from codes', () => {
    expect(errorClassName('AGENT_DISCONNECTED')).toBe('AgentDisconnectedError');
    expect(errorClassName('INTERNAL')).toBe('InternalError');
    expect(errorClassName('WORKSPACE_HAS_NO_AGENT')).toBe('WorkspaceHasNoAgentError');
  });
});

describe('errorFromAnswer', () => {
  it('reads a problem+json into its class, with every member and what the headers say', () => {
    const error = errorFromAnswer(
      problemAnswer(
        409,
        {
          type: 'urn:agentgate:error:agent-disconnected',
          title: 'Agent disconnected',
          status: 409,
          detail: 'the agent said goodbye',
          code: 'AGENT_DISCONNECTED',
          retryable: false,
          hint: 'restart it',
          workspaceId: 'ws-9',
          agentId: 'ag-1',
          agentStatus: 'disconnected',
          disconnectedSeconds: 12,
        },
        { 'retry-after': '3', 'x-request-id': 'req-7' },
      ),
      call,
      NOW,
    );
    expect(error).toBeInstanceOf(AgentDisconnectedError);
    expect({ ...error, message: error.message }).toEqual({
      name: 'AgentDisconnectedError',
      message: 'AGENT_DISCONNECTED: the agent said goodbye',
      code: 'AGENT_DISCONNECTED',
      status: 409,
      type: 'urn:agentgate:error:agent-disconnected',
      title: 'Agent disconnected',
      detail: 'the agent said goodbye',
      retryable: false,
      hint: 'restart it',
      retryAfter: 3,
      workspaceId: 'ws-9',
      agentId: 'ag-1',
      agentStatus: 'disconnected',
      disconnectedSeconds: 12,
      requestId: 'req-7',
      method: 'POST',
      proxied: false,
    });
  });

  it('takes retryable from the answer, and the hint from the catalogue when the answer has none', () => {
    const error = errorFromAnswer(problemAnswer(502, { code: 'AGENT_UNREACHABLE', detail: 'refused' }), call, NOW);
    expect(error.constructor.name).toBe('AgentUnreachableError');
    expect(error.retryable).toBe(true);
    expect(error.hint).toBe(ERROR_CATALOGUE.AGENT_UNREACHABLE.hint);
    expect(error.workspaceId).toBe('ws-1');
    const overridden = errorFromAnswer(problemAnswer(502, { code: 'AGENT_UNREACHABLE', detail: 'x', retryable: false }), call, NOW);
    expect(overridden.retryable).toBe(false);
  });

  it('gives a plain AgentgateError for a code this client does not know', () => {
    const error = errorFromAnswer(problemAnswer(503, { code: 'SOMETHING_NEW', detail: 'newer gate', retryable: true, hint: 'wait' }), call, NOW);
    expect(error.constructor).toBe(AgentgateError);
    expect(error.code).toBe('SOMETHING_NEW');
    expect(error.retryable).toBe(true);
    expect(error.hint).toBe('wait');
  });

  const unexpected: Array<[string, { status: number; headers: Record<string, string>; text: string }, boolean]> = [
    ['an HTML 502 from a load balancer', { status: 502, headers: { 'content-type': 'text/html' }, text: '<html>Bad Gateway</html>' }, true],
    ['an empty 503', { status: 503, headers: {}, text: '' }, true],
    ['a 404 in plain text', { status: 404, headers: { 'content-type': 'text/plain' }, text: 'not found' }, false],
    ['JSON with a code but not problem+json', { status: 409, headers: { 'content-type': 'application/json' }, text: '{"code":"AGENT_DISCONNECTED"}' }, false],
    ['problem+json without a code', { status: 500, headers: { 'content-type': 'application/problem+json' }, text: '{"title":"x"}' }, false],
    ['problem+json that is not JSON', { status: 504, headers: { 'content-type': 'application/problem+json' }, text: '<html>' }, true],
    ['problem+json whose code is not a string', { status: 400, headers: { 'content-type': 'application/problem+json' }, text: '{"code":5}' }, false],
  ];
  it.each(unexpected)('%s → UNEXPECTED_RESPONSE', (_name, answer, retryable) => {
    const error = errorFromAnswer({ status: answer.status, headers: new Headers(answer.headers), text: answer.text }, call, NOW);
    expect(error.constructor).toBe(AgentgateError);
    expect(error.code).toBe('UNEXPECTED_RESPONSE');
    expect(error.status).toBe(answer.status);
    expect(error.retryable).toBe(retryable);
    expect(error.hint).toBe(CLIENT_ERROR_CODES.UNEXPECTED_RESPONSE.hint);
  });

  it('keeps Retry-After on an unexpected answer too', () => {
    const error = unexpectedAnswer({ status: 503, headers: new Headers({ 'retry-after': '7' }) }, call, NOW);
    expect(error.retryAfter).toBe(7);
  });
});

describe('parseRetryAfter', () => {
  const rows: Array<[string | null, number | undefined]> = [
    [null, undefined],
    ['0', 0],
    ['5', 5],
    [' 12 ', 12],
    ['1.5', undefined],
    ['-3', undefined],
    ['soon', undefined],
    [new Date(NOW + 4_200).toUTCString(), 4],
    [new Date(NOW - 10_000).toUTCString(), 0],
  ];
  it.each(rows)('%s → %s', (value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });
});

describe('isAgentAnswer', () => {
  it('is the x-agentgate-upstream: agent header, nothing else', () => {
    expect(isAgentAnswer(new Headers({ 'x-agentgate-upstream': 'agent' }))).toBe(true);
    expect(isAgentAnswer(new Headers({ 'x-agentgate-upstream': 'Agent ' }))).toBe(true);
    expect(isAgentAnswer(new Headers({ 'content-type': 'application/problem+json' }))).toBe(false);
    expect(isAgentAnswer(new Headers({ 'x-agentgate-upstream': 'gate' }))).toBe(false);
  });
});

describe('the token', () => {
  it('is shown by no inspection of the client', () => {
    const token = 'agconn_secret-token-value';
    const c = createClient({ baseUrl: 'http://127.0.0.1:1/', token });
    expect(inspect(c, { depth: 5, showHidden: true })).not.toContain(token);
    expect(JSON.stringify(c)).not.toContain(token);
    expect(c.baseUrl).toBe('http://127.0.0.1:1');
  });

  it('is required', () => {
    expect(() => createClient({ baseUrl: 'http://127.0.0.1:1', token: '' })).toThrow(/token is required/);
  });

  it.each(['agconn_secret\nx-injected: 1', 'agconn_secret ', ' agconn_secret', 'agconn_sécret', 'agconn_secret\u0000', 'agconn_secret\t'])(
    '%j is refused at creation, by a TypeError that does not show it',
    (token) => {
      let thrown: unknown;
      try {
        createClient({ baseUrl: 'http://127.0.0.1:1', token });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(TypeError);
      const shown = `${inspect(thrown, { depth: 5, showHidden: true })} ${(thrown as Error).message}`;
      expect(shown).not.toContain('secret');
      expect(shown).toMatch(/visible ASCII/);
    },
  );
});
