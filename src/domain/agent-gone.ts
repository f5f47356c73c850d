// Abort reason of a call in flight (a proxied request, an MCP tool call) whose agent went away:
// said goodbye, was replaced, or is one the gate would now refuse a new call for.
export class AgentGone extends Error {
  override name = 'AgentGone';
}
