// How deep a parsed JSON value nests. JSON.parse takes any depth, but what walks the value
// afterwards recursively (schema validation, JSON.stringify) overflows the stack on a deep one:
// an overflow caught as an internal error would carry its text to the caller. Deep values are
// refused where they enter instead. Iterative, so that the check cannot overflow itself.

/**
 * The most levels of arrays and objects an MCP message may nest, from either side: far past what
 * a tool's arguments or result need, far below what a recursive walk can take.
 */
export const MAX_JSON_DEPTH = 64;

/** Whether `value` nests arrays and objects more than `max` levels deep. */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<{ value: unknown; depth: number }> = [{ value, depth: 0 }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    if (typeof item.value !== 'object' || item.value === null) continue;
    const depth = item.depth + 1;
    if (depth > max) return true;
    const children: unknown[] = Array.isArray(item.value) ? item.value : Object.values(item.value);
    for (const child of children) {
      if (typeof child === 'object' && child !== null) stack.push({ value: child, depth });
    }
  }
  return false;
}
