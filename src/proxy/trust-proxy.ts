// Who called, as the agent is told (x-forwarded-*): the gate's own peer, unless that peer is a
// reverse proxy listed in AGENTGATE_TRUST_PROXY. Only then are the forwarding headers it sets
// believed, and only then is a Host passed on as x-forwarded-host: from anyone else it is
// whatever the caller chose to write.
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';

/** Whether an address is one of the trusted proxies. */
export type TrustProxy = (address: string | undefined) => boolean;

const NONE: TrustProxy = () => false;

/** The trust function of AGENTGATE_TRUST_PROXY's entries (addresses and CIDR ranges). */
export function trustProxyFrom(entries: readonly string[]): TrustProxy {
  if (entries.length === 0) return NONE;
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', prefix] = entry.split('/');
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return (address) => {
    if (!address) return false;
    const family = isIP(address);
    if (family === 0) return false;
    if (list.check(address, family === 6 ? 'ipv6' : 'ipv4')) return true;
    // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    return mapped !== undefined && list.check(mapped, 'ipv4');
  };
}

function lastEntry(value: string | string[] | undefined): string | undefined {
  const joined = Array.isArray(value) ? value.join(',') : value;
  const last = joined?.split(',').pop()?.trim();
  return last ? last : undefined;
}

export interface ForwardedFor {
  clientIp: string;
  proto: 'http' | 'https';
  /** The Host the caller used, as a trusted proxy reports it; undefined when no proxy is trusted. */
  host: string | undefined;
}

/**
 * The forwarding context of a request. From a trusted proxy: the client is the first address,
 * walking x-forwarded-for from the right, that is not itself a trusted proxy (as Fastify's
 * trustProxy does); the protocol and host are the proxy's x-forwarded-proto and
 * x-forwarded-host (or its Host).
 */
export function forwardedFor(req: IncomingMessage, trust: TrustProxy): ForwardedFor {
  const peer = req.socket.remoteAddress ?? '';
  const encrypted = 'encrypted' in req.socket && req.socket.encrypted === true;
  const own: ForwardedFor = { clientIp: peer, proto: encrypted ? 'https' : 'http', host: undefined };
  if (!trust(peer)) return own;
  let clientIp = peer;
  const hops = String(req.headers['x-forwarded-for'] ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  while (trust(clientIp) && hops.length > 0) clientIp = hops.pop() ?? clientIp;
  const proto = lastEntry(req.headers['x-forwarded-proto'])?.toLowerCase();
  return {
    clientIp,
    proto: proto === 'https' || proto === 'http' ? proto : own.proto,
    host: lastEntry(req.headers['x-forwarded-host']) ?? req.headers.host,
  };
}
