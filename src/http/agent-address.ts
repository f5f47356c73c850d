// Agent addresses (SPEC 4.3): absolute http: or https: URLs without credentials. A query or
// fragment is refused too, since proxied paths are appended to the address.

/** Why the address is refused, or undefined when it is acceptable. */
export function checkAgentAddress(address: string): string | undefined {
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
