/**
 * Random base-36 strings for the fake's uuids, token secrets and etags.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';

/** `n` random characters of `[0-9a-z]`, the alphabet of Arvados uuids. */
export function random36(n: number): string {
  let s = '';
  for (const b of randomBytes(n)) s += (b % 36).toString(36);
  return s;
}
