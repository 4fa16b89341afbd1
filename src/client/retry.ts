/**
 * When to try an API call again, how long to wait first, and the one loop
 * that does it. Mirrors the Go SDK (go-retryablehttp): transport errors, 429
 * and 5xx except 501 are retried with exponential backoff and jitter;
 * `Retry-After` wins for 429/503; every other status is final. The loop takes
 * its clock and randomness as parameters, so tests drive it without waiting.
 *
 * @module
 */
import { realClock, type Clock } from '../util/sleep.js';

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

/** What a failed attempt means for the loop. */
export interface RetryDecision {
  /** Whether another attempt may succeed. */
  retry: boolean;
  /** Wait exactly this long (a server's `Retry-After`), instead of the backoff. */
  after?: number;
  /** At most this many retries for this kind of failure (e.g. 1 for a name that does not resolve). */
  maxRetries?: number;
}

/** Options of {@link withRetries}. */
export interface RetryOptions {
  policy: RetryPolicy;
  /** Classifies a failed attempt's error. */
  decide(err: unknown): RetryDecision;
  /** Told before each wait, e.g. to log it. */
  onRetry?(err: unknown, attempts: number, delay: number): void;
  /** Stops the loop at once, during an attempt or a wait. */
  signal?: AbortSignal;
  /** Time on `clock` after which no new attempt starts: a wait that would end later gives up instead. */
  deadline?: number;
  clock?: Clock;
  random?: () => number;
}

/**
 * Runs `attempt(0)`, `attempt(1)`, … until one resolves, an error is not
 * worth retrying, the retries or the deadline run out, or `signal` aborts.
 * The last attempt's error is thrown as it is (the caller built it, with the
 * attempt count), or the signal's reason on abort.
 */
export async function withRetries<T>(attempt: (n: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const clock = o.clock ?? realClock;
  for (let n = 0; ; n++) {
    if (o.signal?.aborted) throw o.signal.reason;
    try {
      return await attempt(n);
    } catch (err) {
      if (o.signal?.aborted) throw o.signal.reason;
      const d = o.decide(err);
      if (!d.retry || n >= Math.min(o.policy.retries, d.maxRetries ?? Infinity)) throw err;
      if (d.after !== undefined && d.after > o.policy.maxRetryAfter) throw err;
      const delay = d.after ?? backoffDelay(n, o.policy, o.random);
      if (o.deadline !== undefined && clock.now() + delay >= o.deadline) throw err;
      o.onRetry?.(err, n + 1, delay);
      await clock.sleep(delay, o.signal);
    }
  }
}

