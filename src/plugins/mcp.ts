// The MCP front door (src/mcp/front-door.ts), decorated as `app.frontDoor`, with the MCP calls
// this process runs. A cancel may reach a replica other than the one running its call
// (contract §11: no affinity): cancels that matched nothing here are recorded for every replica,
// and those recorded elsewhere are applied to this process's calls.
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { publishCancels } from '../db/events.js';
import { sharedSchemaValidator } from '../http/mcp-http.js';
import { RunningCalls } from '../mcp/calls.js';
import { cancelRelay } from '../mcp/cancel-relay.js';
import { FrontDoor } from '../mcp/front-door.js';
import { ToolLists } from '../mcp/tool-lists.js';

declare module 'fastify' {
  interface FastifyInstance {
    frontDoor: FrontDoor;
  }
}

export default fp<{ config: Config }>(
  async (app, { config }) => {
    const calls = new RunningCalls();
    const frontDoor = new FrontDoor({
      gate: app.gate,
      config,
      metrics: app.metrics,
      calls,
      inFlight: app.inFlight,
      lists: new ToolLists(),
      validator: sharedSchemaValidator(),
      tracing: app.tracing,
      cancelElsewhere: cancelRelay((notices) => publishCancels(app.db, notices), app.log),
    });
    app.events.onCancel((notice) => {
      if (calls.cancel(notice.key, notice.reason) === 'cancelled') app.log.info('cancelled an MCP call on a cancel sent to another replica');
    });
    app.decorate('frontDoor', frontDoor);
  },
  { name: 'agentgate-mcp', dependencies: ['agentgate-gate', 'agentgate-events', 'agentgate-in-flight', 'agentgate-metrics', 'agentgate-tracing'] },
);
