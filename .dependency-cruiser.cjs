// The layers of src/ and the one direction their imports may point (run by `npm run lint`):
//
//   app       app.ts, server.ts, cli.ts, demo.ts, runtime.ts, plugins/  (assembles the rest)
//   http      routes and request-pipeline plugins
//   mcp       the MCP front door: a server per request, and a client of the agents' /mcp
//   proxy     forwarding a call over a gate connection, WebSocket tunnels
//   gate      the decision flow, shared dials, the connection cache
//   transport how an agent is reached: the seam (agent-transport.ts) and its HTTP dial (http/)
//   auth      tokens, principals, the gate's signing key
//   db        repositories, the pool, migrations, notifications
//   base      config, logger, metrics, lifecycle, event hub, tracing/
//   domain    agent times and status, events, error codes, token formats: imports nothing
//
// The reference agent (agent/) is a program of its own: it may use http's plugins, auth's
// signature checks, base and domain, never the gate's internals.
//
// The client (client/, published as `agentgate/client`) is a library for chat servers: it may
// import domain and nothing else, no package and no Node module, so that importing it pulls in
// neither Fastify nor pg and it runs on the global fetch alone.
const LAYERS = {
  domain: '^src/domain/',
  base: '^src/((config|logger|metrics|lifecycle|event-hub)[.]ts$|tracing/)',
  db: '^src/db/',
  auth: '^src/auth/',
  gate: '^src/gate/',
  transport: '^src/transport/',
  proxy: '^src/proxy/',
  http: '^src/http/',
  mcp: '^src/mcp/',
  agent: '^src/agent/',
  client: '^src/client/',
};

/** `layer` may import only from itself and `allowed` (anything outside src/ is not checked). */
const only = (layer, allowed) => ({
  name: `${layer}-imports-only-${allowed.join('-') || 'itself'}`,
  comment: `${layer} may import only from ${allowed.length ? allowed.join(', ') : 'itself'}`,
  severity: 'error',
  from: { path: LAYERS[layer] },
  to: { path: '^src/', pathNot: [LAYERS[layer], ...allowed.map((name) => LAYERS[name])] },
});

module.exports = {
  forbidden: [
    only('domain', []),
    only('base', ['domain']),
    only('db', ['base', 'domain']),
    only('auth', ['db', 'base', 'domain']),
    only('transport', ['auth', 'base', 'domain']),
    only('gate', ['transport', 'auth', 'db', 'base', 'domain']),
    only('proxy', ['gate', 'transport', 'auth', 'db', 'base', 'domain']),
    only('mcp', ['proxy', 'gate', 'transport', 'auth', 'db', 'base', 'domain']),
    only('http', ['mcp', 'proxy', 'gate', 'transport', 'auth', 'db', 'base', 'domain']),
    only('agent', ['http', 'auth', 'base', 'domain']),
    only('client', ['domain']),
    {
      name: 'client-imports-no-package',
      comment: 'agentgate/client ships without dependencies: no package, no Node module (it runs on the global fetch)',
      severity: 'error',
      from: { path: LAYERS.client },
      to: { dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-bundled', 'npm-no-pkg', 'npm-unknown', 'core'] },
    },
    {
      name: 'no-circular',
      comment: 'a cycle makes two modules one; break it by moving what both need lower',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'not-to-dev-dependencies',
      comment: 'src/ ships without devDependencies',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js'] },
  },
};
