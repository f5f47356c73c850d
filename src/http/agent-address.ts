// Agent addresses (contract §4.3): absolute http: or https: URLs without credentials. A query or
// fragment is refused too, since proxied paths are appended to the address.

/** Why the address is refused, or undefined when it is acceptable. */
export function checkAgentAddress(address: string): string | undefined {
  // The URL parser would strip or encode these, but the address is stored as registered, and
  // PostgreSQL text cannot hold NUL.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u0020\u007f]/.test(address)) return 'must not contain spaces or control characters';
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must use http: or https:';
  if (url.username !== '' || url.password !== '') return 'must not carry credentials';
  if (url.hostname === '') return 'must name a host';
  if (url.search !== '' || address.includes('?')) return 'must not have a query';
  if (url.hash !== '' || address.includes('#')) return 'must not have a fragment';
  return undefined;
}
