// The chat-server routes (contract §4.1): conn, the proxy and the MCP front door, sharing one
// per-token budget when AGENTGATE_RATE_LIMIT_PER_MIN is set.
import type { FastifyPluginAsync } from 'fastify';
import type { Config } from '../../config.js';
import chatRateLimit from '../plugins/rate-limit.js';
import connRoutes from './conn.js';
import mcpRoutes from './mcp.js';
import proxyRoutes from './proxy.js';

const chatRoutes: FastifyPluginAsync<{ config: Config }> = async (chat, { config }) => {
  const { gate, metrics, inFlight, httpProxy, websockets, frontDoor, concurrency } = chat;
  if (config.rateLimitPerMin > 0) await chat.register(chatRateLimit, { perMinute: config.rateLimitPerMin });
  await chat.register(connRoutes, { gate });
  await chat.register(proxyRoutes, { gate, metrics, config, proxy: httpProxy, websockets, inFlight });
  await chat.register(mcpRoutes, { gate, metrics, frontDoor, concurrency, drainTimeoutMs: config.requestTimeoutMs });
};

export default chatRoutes;
