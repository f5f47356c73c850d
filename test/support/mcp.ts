// MCP clients for tests: the official SDK's Client over Streamable HTTP, either straight to an
// agent's /mcp with every request signed as the gate signs it, or to agentgate's front door
// with a bearer token.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { SIGNATURE_HEADER } from '../../src/auth/gate-signature.js';
import type { GateSigningKey } from '../../src/auth/gate-signing-key.js';

/** fetch with the gate's signature added for exactly the method, path and query sent. */
export function signedFetch(key: GateSigningKey, agentId: string): FetchLike {
  return (url, init) => {
    const target = new URL(url);
    const headers = new Headers(init?.headers);
    headers.set(SIGNATURE_HEADER, key.sign(agentId, init?.method ?? 'GET', target.pathname + target.search));
    return fetch(url, { ...init, headers });
  };
}

export interface McpClient {
  client: Client;
  transport: StreamableHTTPClientTransport;
  close(): Promise<void>;
}

/** A connected client (initialize done) to `url`. */
export async function connectClient(url: string, options: { fetch?: FetchLike; token?: string } = {}): Promise<McpClient> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.token ? { requestInit: { headers: { authorization: `Bearer ${options.token}` } } } : {}),
  });
  const client = new Client({ name: 'agentgate-tests', version: '0.0.0' });
  await client.connect(transport);
  return { client, transport, close: () => client.close() };
}

/** The text of a tool result's content, joined. */
export function resultText(result: unknown): string {
  const content = ((result as { content?: unknown }).content ?? []) as Array<{ type: string; text?: string }>;
  return content
    .filter((c) => c.type === 'text')
    .map((c) => c.text ?? '')
    .join('\n');
}
