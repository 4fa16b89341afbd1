/**
 * The management token check every endpoint of the management server makes.
 *
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** The outcome of {@link checkBearer}: go on, or the HTTP status to answer. */
export type AuthResult = 'ok' | 401 | 403;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Checks an `Authorization` header against `token`: 401 when there is no
 * credential, 403 when it is not the token. `Bearer` and `OAuth2` (the
 * Arvados SDKs' spelling) are both accepted. The comparison takes the same
 * time wherever the first difference is: both sides are hashed to a fixed
 * length first, so neither the token's length nor its prefix leaks through
 * timing.
 */
export function checkBearer(header: string | undefined, token: string): AuthResult {
  const m = /^\s*(?:bearer|oauth2)\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return 401;
  return timingSafeEqual(digest(m[1]), digest(token)) ? 'ok' : 403;
}
