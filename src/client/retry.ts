/**
 * When to try an API call again, and how long to wait first. Mirrors the Go
 * SDK (go-retryablehttp): transport errors, 429 and 5xx except 501 are
 * retried with exponential backoff and jitter; `Retry-After` wins for 429/503;
 * every other status is final. TLS verification failures are never retried:
 * waiting does not make a certificate trusted.
 *
 * @module
 */

/** Backoff settings. */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  retries: number;
  /** First backoff delay, ms; later ones grow exponentially. */
  baseDelay: number;
  /** Cap on any computed backoff delay, ms. */
  maxDelay: number;
  /** A `Retry-After` longer than this (ms) ends the retries instead of waiting. */
  maxRetryAfter: number;
}

/** True for statuses worth another attempt: 429, and 5xx except 501 (Not Implemented). */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status !== 501);
}

// OpenSSL/Node verification failures. Retrying cannot fix any of them.
const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

/** True when a Node error code means "the server's certificate was not accepted". */
export function isTlsVerificationCode(code: string | undefined): boolean {
  return code !== undefined && TLS_CODES.has(code);
}

/**
 * Backoff before retry number `retry` (0 for the first retry):
 * `base + (2^retry·base − base)·jitter`, jitter in [0, 1), capped at `maxDelay`.
 */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const base = policy.baseDelay;
  const grown = base * 2 ** Math.min(retry, 30);
  return Math.min(policy.maxDelay, base + (grown - base) * random());
}

/** Parses `Retry-After` (seconds or an HTTP date) into ms from `now`; undefined if absent or invalid. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

export { sleep } from '../util/sleep.js';
