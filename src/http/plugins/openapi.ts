// The OpenAPI 3 document, generated from the same TypeBox schemas that validate requests.
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';

export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'agentgate',
          version: '0.1.0',
          description: 'A gate between chat servers and workspace agents.',
        },
        components: {
          securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
        },
        security: [{ bearer: [] }],
        tags: [
          { name: 'chat', description: 'Chat-server routes (conn or admin tokens)' },
          { name: 'agent', description: 'Agent routes (agent tokens)' },
          { name: 'control', description: 'Control routes (admin tokens)' },
          { name: 'operations', description: 'Unauthenticated operations routes' },
        ],
      },
    });
  },
  { name: 'agentgate-openapi' },
);
