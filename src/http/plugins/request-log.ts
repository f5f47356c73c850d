// One log line per request, when its response has been sent: what a request did, in the fields
// an operator filters on (route, workspace, agent, outcome code, status, duration, degraded).
// Fastify's own "incoming request" and "request completed" lines are off (disableRequestLogging):
// three lines a call cost a quarter of the gate's time. Routes note what they learn on the way
// (noteOutcome) instead of binding child loggers per request.
import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import { urlForLog } from '../../logger.js';
import type { Metrics } from '../../metrics.js';

export interface Outcome {
  workspaceId?: string | undefined;
  agentId?: string | undefined;
  /** The contract §6 code answered, or `client_closed`. */
  code?: string | undefined;
  /** Why the request was refused, for codes that do not say it all. */
  detail?: string | undefined;
  degraded?: boolean | undefined;
  /** The internal failure behind a 5xx answer. */
  cause?: string | undefined;
  /** A proxied response cut off midway (`broken`), or complete. */
  stream?: string | undefined;
  /** The MCP methods of the request's JSON-RPC messages, and what each came to (comma-separated). */
  mcpMethod?: string | undefined;
  mcpOutcome?: string | undefined;
  /**
   * The route writes the line itself (logRequest), once the response has closed: what its
   * requests came to is known only then (an MCP exchange).
   */
  selfLogged?: boolean | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    outcome: Outcome | null;
  }
}

/** Adds to the request's log line. */
export function noteOutcome(request: FastifyRequest, fields: Outcome): void {
  if (!request.outcome) request.outcome = fields;
  else Object.assign(request.outcome, fields);
}

/** Logs the line now, for a request whose response will never finish (the caller left). */
export function logRequest(request: FastifyRequest, status: number, elapsedMs: number): void {
  const o = request.outcome;
  const params = request.params as { workspaceId?: string } | undefined;
  // A failure on our side or the agent's (5xx) is a warning; refusals that are answers are not.
  request.log[status >= 500 ? 'warn' : 'info'](
    {
      method: request.method,
      url: urlForLog(request.url),
      route: request.routeOptions.url,
      status,
      ms: Math.round(elapsedMs),
      workspaceId: o?.workspaceId ?? params?.workspaceId,
      agentId: o?.agentId,
      code: o?.code,
      detail: o?.detail,
      cause: o?.cause,
      degraded: o?.degraded,
      stream: o?.stream,
      mcpMethod: o?.mcpMethod,
      mcpOutcome: o?.mcpOutcome,
    },
    'request',
  );
}

export default fp<{ metrics: Metrics }>(
  (app, { metrics }) => {
    app.decorateRequest('outcome', null);
    app.addHook('onResponse', async (request, reply) => {
      if (!request.outcome?.selfLogged) logRequest(request, reply.statusCode, reply.elapsedTime);
      // Refusals that protect the service, whichever hook or route made them: counted here, on
      // the one hook every answered request already passes, rather than on a second one.
      const code = request.outcome?.code;
      if (code === 'OVERLOADED' || code === 'RATE_LIMITED') metrics.refusals.inc({ code });
    });
  },
  { name: 'agentgate-request-log' },
);
