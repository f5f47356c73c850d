// Who a request comes from, once its token is resolved.
export type Principal =
  | { kind: 'admin'; tokenId: string }
  | { kind: 'conn'; tokenId: string; ownerId: string | null }
  | { kind: 'agent'; agentId: string; workspaceId: string };

/** The tokenId of the environment's admin token (AGENTGATE_ADMIN_TOKEN), which is not a row. */
export const ENV_TOKEN_ID = 'env';

/** Route access levels: which principals a route admits (contract §4). */
export type Access = 'admin' | 'conn' | 'agent' | 'public';

export function admits(access: Access, principal: Principal): boolean {
  switch (access) {
    case 'public':
      return true;
    case 'admin':
      return principal.kind === 'admin';
    case 'conn':
      return principal.kind === 'admin' || principal.kind === 'conn';
    case 'agent':
      return principal.kind === 'agent';
  }
}

/** The owner a principal is confined to, or null when it sees every workspace. */
export function ownerScope(principal: Principal): string | null {
  return principal.kind === 'conn' ? principal.ownerId : null;
}

/**
 * The id of the API token a principal came with, as the work it sends is tied to it; null for
 * one that cannot be revoked (the environment's admin token) and for agents (not chat callers).
 */
export function revocableTokenId(principal: Principal): string | null {
  if (principal.kind === 'agent') return null;
  return principal.tokenId === ENV_TOKEN_ID ? null : principal.tokenId;
}
