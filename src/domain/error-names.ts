// How a code is spelled as a class name (`AGENT_DISCONNECTED` → `AgentDisconnectedError`): the
// client's classes and the error document both use it.

/** `AGENT_DISCONNECTED` → `AgentDisconnected`. */
type Pascal<S extends string> = S extends `${infer Head}_${infer Rest}` ? `${Capitalize<Lowercase<Head>>}${Pascal<Rest>}` : Capitalize<Lowercase<S>>;

export type ErrorClassName<C extends string> = `${Pascal<C>}Error`;

/** The class name of a code, spelled as the type `ErrorClassName` spells it. */
export function errorClassName<C extends string>(code: C): ErrorClassName<C> {
  const pascal = code
    .split('_')
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1).toLowerCase())
    .join('');
  return `${pascal}Error` as ErrorClassName<C>;
}
