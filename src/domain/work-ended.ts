// Why work in flight (a proxied request or stream, an MCP call, a WebSocket) was ended from
// outside: its authority ended (a revoked token, a deleted workspace, an owner that is no longer
// the token's) or its agent went away (a goodbye, a replacement, heartbeats that stopped). It is
// the abort reason such work carries, and `code` is the answer a new call would get now.

export type EndingCode = 'AGENT_CONNECTION_LOST' | 'UNAUTHENTICATED' | 'WORKSPACE_NOT_FOUND';

export interface Ending {
  code: EndingCode;
  /** Why, in a few words a caller can read ("its token was revoked"). */
  reason: string;
}

export class WorkEnded extends Error {
  override name = 'WorkEnded';
  readonly code: EndingCode;
  constructor(ending: Ending) {
    super(ending.reason);
    this.code = ending.code;
  }
}
