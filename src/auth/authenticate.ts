// Bearer authentication, shared by the HTTP routes (auth plugin) and WebSocket upgrades, which
// bypass Fastify: a missing, unknown or revoked token is UNAUTHENTICATED, a token of the wrong
// kind is FORBIDDEN (contract §6).
import { ApiError } from '../domain/errors.js';
import { isDatabaseUnavailable } from '../db/failures.js';
import { admits, type Access, type Principal } from './principal.js';
import { bearerToken } from '../domain/tokens.js';
import type { TokenStore } from './token-store.js';

export async function authenticate(tokens: TokenStore, authorization: string | undefined, access: Exclude<Access, 'public'>): Promise<Principal> {
  const token = bearerToken(authorization);
  if (!token) throw new ApiError('UNAUTHENTICATED', 'a bearer token is required');
  let principal: Principal | null;
  try {
    principal = await tokens.resolve(token);
  } catch (error) {
    if (!isDatabaseUnavailable(error)) throw error;
    throw new ApiError('DATABASE_UNAVAILABLE', 'the token could not be checked: the database is unavailable', { retryAfter: 1 });
  }
  if (!principal) throw new ApiError('UNAUTHENTICATED', 'the token is unknown or revoked');
  if (!admits(access, principal)) {
    throw new ApiError('FORBIDDEN', `this route needs ${access === 'agent' ? 'an agent' : `a ${access}`} token`);
  }
  return principal;
}
