// The rule a proxied path must pass (contract §6), shared by the gate, which refuses such a path with
// INVALID_REQUEST, and agentgate/client, which refuses it before sending: the path is forwarded as
// sent and never resolved, so anything a server on the way could resolve out of the agent's base
// path is refused: dot segments (plain or percent-encoded, at any depth of encoding, with or
// without `;` parameters), encoded slashes and backslashes, raw backslashes, empty segments, NUL
// and control characters. Decoding is bounded (MAX_DECODE_ROUNDS), so a check is linear in the
// path's length.

export type PathCheck = { ok: true } | { ok: false; reason: string };

/**
 * How many rounds of percent-decoding may change a segment. Each round is linear in the
 * segment's length, so bounding the rounds keeps a whole check linear: decoding to a fixed
 * point without a bound is quadratic (a segment of nested `%25` escapes loses two characters a
 * round). Quadruple encoding is still refused on its content; deeper is refused outright.
 */
export const MAX_DECODE_ROUNDS = 4;

type Decoded = { ok: true; value: string } | { ok: false; reason: string };

/** Percent-decodes repeatedly (double, triple... encodings) until nothing changes, at most MAX_DECODE_ROUNDS times. */
function decodeDeep(segment: string): Decoded {
  let current = segment;
  // One round more than allowed: it must change nothing.
  for (let round = 0; round <= MAX_DECODE_ROUNDS; round++) {
    if (!current.includes('%')) return { ok: true, value: current };
    let next: string;
    try {
      next = decodeURIComponent(current);
    } catch {
      return { ok: false, reason: 'the path contains malformed percent-encoding' };
    }
    if (next === current) return { ok: true, value: current };
    current = next;
  }
  return { ok: false, reason: `the path is percent-encoded more than ${MAX_DECODE_ROUNDS} levels deep` };
}

/** Checks the raw path (no query) that follows `/workspaces/:id/conn`; it starts with `/`. */
export function checkForwardPath(rawPath: string): PathCheck {
  if (!rawPath.startsWith('/')) return { ok: false, reason: 'the path must start with /' };
  if (rawPath.length > 8192) return { ok: false, reason: 'the path is too long' };
  if (rawPath.includes('\\')) return { ok: false, reason: 'the path contains a backslash' };
  const segments = rawPath.slice(1).split('/');
  for (const [i, segment] of segments.entries()) {
    // A trailing slash is an empty last segment and fine; `//` elsewhere is not.
    if (segment === '' && i !== segments.length - 1) return { ok: false, reason: 'the path contains an empty segment (//)' };
    const result = decodeDeep(segment);
    if (!result.ok) return result;
    const decoded = result.value;
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    if (/[\u0000-\u001f\u007f]/.test(decoded)) return { ok: false, reason: 'the path contains a control character' };
    if (decoded.includes('/') || decoded.includes('\\')) {
      return { ok: false, reason: 'the path contains an encoded slash or backslash' };
    }
    // `..;x` and `.;x` are dot segments to servers that strip path parameters.
    const bare = decoded.split(';')[0] ?? '';
    if (bare === '.' || bare === '..') return { ok: false, reason: 'the path contains a dot segment' };
  }
  return { ok: true };
}
