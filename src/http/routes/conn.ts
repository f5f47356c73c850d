// Chat-server routes (contract §4.1): ensure a live connection to a workspace's agent, or read its
// status without side effects. conn tokens (optionally owner-scoped) and admin tokens.
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ownerScope } from '../../auth/principal.js';
import type { Gate } from '../../gate/gate.js';
import { CallerGone } from '../../domain/failures.js';
import type { Classification } from '../../domain/agent.js';
import type { CurrentAgent } from '../../db/gate-read.js';
import { AgentName, AgentStatus, NullableTime, Uuid, WorkspaceParams, withProblems } from '../schemas.js';
import { answerCallerGone, callerSignal } from '../caller.js';
import { noteOutcome } from '../plugins/request-log.js';

export const AgentQuery = Type.Object({ agent: Type.Optional(AgentName) }, { additionalProperties: false });

const Agent = Type.Object({
  id: Uuid,
  name: Type.String(),
  status: AgentStatus,
  firstConnectedAt: NullableTime,
  lastConnectedAt: NullableTime,
  disconnectedAt: NullableTime,
});

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** The agent as the API shows it: its classified status and its times as RFC 3339 strings. */
export function presentAgent(agent: CurrentAgent, c: Classification): Static<typeof Agent> {
  return {
    id: agent.id,
    name: agent.name,
    status: c.status,
    firstConnectedAt: iso(agent.firstConnectedAt),
    lastConnectedAt: iso(agent.lastConnectedAt),
    disconnectedAt: iso(c.disconnectedAt),
  };
}

const ConnResponse = Type.Object({
  workspaceId: Uuid,
  agent: Agent,
  connection: Type.Object({
    cached: Type.Boolean({ description: 'true when no dial was needed for this call' }),
    dialedAt: Type.String({ format: 'date-time' }),
    dialMs: Type.Integer(),
  }),
});

const AgentResponse = Type.Object({ workspaceId: Uuid, agent: Agent });

export interface ConnRoutesOptions {
  gate: Gate;
}

const connRoutes: FastifyPluginAsyncTypebox<ConnRoutesOptions> = async (app, { gate }) => {
  app.post(
    '/workspaces/:workspaceId/conn',
    {
      config: { access: 'conn' },
      schema: {
        tags: ['chat'],
        summary: "Ensure a live connection to the workspace's agent, or a sentinel at once",
        params: WorkspaceParams,
        querystring: AgentQuery,
        response: withProblems({ 200: ConnResponse }),
      },
    },
    async (request, reply) => {
      const { workspaceId } = request.params;
      try {
        const result = await gate.connect({
          workspaceId,
          agentName: request.query.agent,
          ownerScope: ownerScope(request.principal!),
          signal: callerSignal(reply),
          log: request.log,
          startedAt: performance.now() - reply.elapsedTime,
          trace: request.traceContext,
        });
        const conn = result.lease.conn;
        result.lease.release();
        if (result.degraded) reply.header('x-agentgate-degraded', 'database');
        noteOutcome(request, { agentId: result.agent.id, degraded: result.degraded || undefined });
        return {
          workspaceId,
          agent: presentAgent(result.agent, result.classification),
          connection: { cached: result.cached, dialedAt: conn.dialedAt.toISOString(), dialMs: Math.round(conn.dialMs) },
        };
      } catch (error) {
        if (error instanceof CallerGone) return answerCallerGone(request, reply);
        throw error;
      }
    },
  );

  app.get(
    '/workspaces/:workspaceId/agent',
    {
      config: { access: 'conn' },
      schema: {
        tags: ['chat'],
        summary: "The agent's status, without dialing (for UIs)",
        params: WorkspaceParams,
        querystring: AgentQuery,
        response: withProblems({ 200: AgentResponse }),
      },
    },
    async (request) => {
      const { workspaceId } = request.params;
      const read = await gate.status({
        workspaceId,
        agentName: request.query.agent,
        ownerScope: ownerScope(request.principal!),
        trace: request.traceContext,
      });
      return { workspaceId, agent: presentAgent(read.agent, read.classification) };
    },
  );
};

export default connRoutes;
