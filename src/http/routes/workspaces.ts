// Control routes for workspaces and builds (contract §4.3, admin tokens only).
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from '../../domain/errors.js';
import { canonicalId } from '../../domain/names.js';
import { AgentName, AgentStatus, NoContent, NullableTime, StoredText, Time, Uuid, WorkspaceParams, withProblems } from '../schemas.js';
import {
  createBuild,
  deleteWorkspace,
  getWorkspaceView,
  upsertWorkspace,
  type WorkspaceView,
} from '../../db/workspaces-repo.js';
import { classifyAgent } from '../../gate/classify.js';
import { checkAgentAddress } from '../agent-address.js';
import type { Config } from '../../config.js';
import type { EventHub } from '../../event-hub.js';

const WorkspaceBody = Type.Object(
  { ownerId: Uuid, name: StoredText(200) },
  { additionalProperties: false },
);

const Workspace = Type.Object({
  id: Uuid,
  ownerId: Uuid,
  name: Type.String(),
  createdAt: Time,
  latestBuild: Type.Union([
    Type.Object({
      id: Uuid,
      buildNumber: Type.Integer(),
      transition: Type.String(),
      createdAt: Time,
    }),
    Type.Null(),
  ]),
  agents: Type.Array(
    Type.Object({
      id: Uuid,
      name: Type.String(),
      address: Type.String(),
      displayOrder: Type.Integer(),
      connectionTimeoutSeconds: Type.Integer(),
      status: AgentStatus,
      firstConnectedAt: NullableTime,
      lastConnectedAt: NullableTime,
      disconnectedAt: NullableTime,
    }),
  ),
});

const Transition = Type.Union([Type.Literal('start'), Type.Literal('stop'), Type.Literal('delete')]);

const BuildBody = Type.Object(
  {
    transition: Transition,
    agents: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: AgentName,
            address: Type.String({ minLength: 1, maxLength: 2048, description: 'absolute http: or https: URL' }),
            connectionTimeoutSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
            displayOrder: Type.Optional(Type.Integer({ minimum: -1_000_000, maximum: 1_000_000 })),
          },
          { additionalProperties: false },
        ),
        { maxItems: 64 },
      ),
    ),
  },
  { additionalProperties: false },
);

const CreatedBuild = Type.Object({
  build: Type.Object({ id: Uuid, buildNumber: Type.Integer(), transition: Transition }),
  agents: Type.Array(Type.Object({ id: Uuid, name: Type.String(), token: Type.String() })),
});

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function presentWorkspace(view: WorkspaceView, inactiveTimeoutMs: number): Static<typeof Workspace> {
  return {
    id: view.id,
    ownerId: view.ownerId,
    name: view.name,
    createdAt: view.createdAt.toISOString(),
    latestBuild: view.latestBuild && {
      ...view.latestBuild,
      createdAt: view.latestBuild.createdAt.toISOString(),
    },
    agents: view.agents.map((agent) => {
      const c = classifyAgent(agent, view.nowMs, inactiveTimeoutMs);
      return {
        id: agent.id,
        name: agent.name,
        address: agent.address,
        displayOrder: agent.displayOrder,
        connectionTimeoutSeconds: agent.connectionTimeoutSeconds,
        status: c.status,
        firstConnectedAt: iso(agent.firstConnectedAt),
        lastConnectedAt: iso(agent.lastConnectedAt),
        disconnectedAt: iso(c.disconnectedAt),
      };
    }),
  };
}

export interface WorkspaceRoutesOptions {
  config: Config;
  events: EventHub;
}

const workspaceRoutes: FastifyPluginAsyncTypebox<WorkspaceRoutesOptions> = async (app, { config, events }) => {
  const notFound = (id: string) => new ApiError('WORKSPACE_NOT_FOUND', 'no such workspace', { workspaceId: id });

  app.put(
    '/workspaces/:workspaceId',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['control'],
        summary: 'Create or update a workspace',
        params: WorkspaceParams,
        body: WorkspaceBody,
        response: withProblems({ 200: Workspace, 201: Workspace }),
      },
    },
    async (request, reply) => {
      const { workspaceId } = request.params;
      const ownerId = canonicalId(request.body.ownerId) ?? request.body.ownerId;
      const result = await upsertWorkspace(app.db, { id: workspaceId, ownerId, name: request.body.name });
      if (!result) throw notFound(workspaceId);
      // This process acts now; other replicas act on the NOTIFY sent with the change.
      if (result.event) {
        events.apply(result.event);
        request.log.info({ ownerId }, 'workspace owner changed');
      }
      const view = await getWorkspaceView(app.db, workspaceId);
      if (!view) throw notFound(workspaceId);
      return reply.code(result.created ? 201 : 200).send(presentWorkspace(view, config.inactiveTimeoutMs));
    },
  );

  app.get(
    '/workspaces/:workspaceId',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['control'],
        summary: 'A workspace, its latest build and that build’s agents',
        params: WorkspaceParams,
        response: withProblems({ 200: Workspace }),
      },
    },
    async (request) => {
      const view = await getWorkspaceView(app.db, request.params.workspaceId);
      if (!view) throw notFound(request.params.workspaceId);
      return presentWorkspace(view, config.inactiveTimeoutMs);
    },
  );

  app.delete(
    '/workspaces/:workspaceId',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['control'],
        summary: 'Delete a workspace: gone for every route, its agents’ tokens dead',
        params: WorkspaceParams,
        response: withProblems({ 204: NoContent }),
      },
    },
    async (request, reply) => {
      const { workspaceId } = request.params;
      const event = await deleteWorkspace(app.db, workspaceId);
      if (!event) throw notFound(workspaceId);
      // This process acts now; other replicas act on the NOTIFY sent with the change.
      events.apply(event);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/workspaces/:workspaceId/builds',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['control'],
        summary: 'Create the next build and its agents (agent tokens are shown once)',
        params: WorkspaceParams,
        body: BuildBody,
        response: withProblems({ 201: CreatedBuild }),
      },
    },
    async (request, reply) => {
      const { workspaceId } = request.params;
      const { transition } = request.body;
      const agents = request.body.agents ?? [];
      if (transition !== 'start' && agents.length > 0) {
        throw new ApiError('INVALID_REQUEST', `a ${transition} build has no agents`);
      }
      const names = new Set<string>();
      for (const [i, agent] of agents.entries()) {
        if (names.has(agent.name)) throw new ApiError('INVALID_REQUEST', `body.agents.${i}.name repeats "${agent.name}"`);
        names.add(agent.name);
        const problem = checkAgentAddress(agent.address);
        if (problem) throw new ApiError('INVALID_REQUEST', `body.agents.${i}.address ${problem}`);
      }
      const result = await createBuild(app.db, workspaceId, transition, agents);
      if (!result) throw notFound(workspaceId);
      const { event, ...created } = result;
      events.apply(event);
      return reply.code(201).send(created);
    },
  );
};

export default workspaceRoutes;
