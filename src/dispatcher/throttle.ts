/**
 * The rules on when a container may be tried again: the per-container
 * `minRetryPeriod` throttle and the backoff after failures.
 *
 * @module
 */
import { realClock } from '../util/sleep.js';

/**
 * `minRetryPeriod`: at most one attempt to start (lock or adopt) the same
 * container per period, as the Go library's throttle does. An attempt is
 * recorded before it is made, whether or not it succeeds; a refused check
 * does not move the clock; entries older than the period are purged.
 */
export class Throttle {
  readonly #hold: number;
  readonly #now: () => number;
  readonly #seen = new Map<string, number>();
  #lastPurge = -Infinity;

  /** @param hold - the period in ms; 0 disables throttling. */
  constructor(hold: number, now: () => number = realClock.now) {
    this.#hold = hold;
    this.#now = now;
  }

  /** True if an attempt for `uuid` may be made now (and records it). */
  check(uuid: string): boolean {
    if (this.#hold <= 0) return true;
    const now = this.#now();
    if (!this.allows(uuid, now)) return false;
    this.#seen.set(uuid, now);
    return true;
  }

  /** True if an attempt for `uuid` may be made at `now`; records nothing (the scheduler asks, {@link check} records). */
  allows(uuid: string, now: number = this.#now()): boolean {
    if (this.#hold <= 0) return true;
    this.#purge(now);
    const last = this.#seen.get(uuid);
    return last === undefined || now - last >= this.#hold;
  }

  /** Entries currently held (for tests and memory checks). */
  get size(): number {
    return this.#seen.size;
  }

  // At most once per period, so the cost is amortised over many checks.
  #purge(now: number): void {
    if (now - this.#lastPurge < this.#hold) return;
    this.#lastPurge = now;
    for (const [uuid, at] of this.#seen) if (now - at >= this.#hold) this.#seen.delete(uuid);
  }
}

/**
 * The delay before attempt `n + 1` after `n` consecutive failures:
 * `initial * 2^(n-1)`, capped at `max`; 0 before the first failure.
 */
export function backoffDelay(failures: number, initial: number, max: number): number {
  if (failures <= 0) return 0;
  return Math.min(max, initial * 2 ** Math.min(failures - 1, 52));
}

/**
 * Exponential, capped backoff per container, for failures that are plausibly
 * the container's own (crunch-run exiting without starting it, a runner
 * rejecting it). Without it a container that fails at once is relocked on
 * every poll until the API cancels it after `MaxDispatchAttempts`, seconds
 * later, for what may be a transient fault on this node. A failure that is
 * ours (configuration, API trouble, a full node) is never recorded here.
 */
export class RetryBackoff {
  readonly #initial: number;
  readonly #max: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, { failures: number; until: number }>();

  /**
   * @param initial - ms to wait after the first failure.
   * @param max - the cap on the wait, and how long after its last wait a
   *   container's failures are forgotten.
   */
  constructor(initial: number, max: number, now: () => number = realClock.now) {
    this.#initial = initial;
    this.#max = Math.max(max, initial);
    this.#now = now;
  }

  /** Records a failure of `uuid`; returns the ms until it may be tried again. */
  failed(uuid: string): number {
    const now = this.#now();
    this.#purge(now);
    const failures = (this.#entries.get(uuid)?.failures ?? 0) + 1;
    const delay = backoffDelay(failures, this.#initial, this.#max);
    this.#entries.set(uuid, { failures, until: now + delay });
    return delay;
  }

  /** Forgets the failures of `uuid` (it ran, or left for good). */
  succeeded(uuid: string): void {
    this.#entries.delete(uuid);
  }

  /** True if `uuid` may be tried now. */
  ready(uuid: string): boolean {
    const e = this.#entries.get(uuid);
    return e === undefined || this.#now() >= e.until;
  }

  /** Ms until `uuid` may be tried (at `now`, default the clock's), 0 if now. */
  remaining(uuid: string, now: number = this.#now()): number {
    const e = this.#entries.get(uuid);
    return e === undefined ? 0 : Math.max(0, e.until - now);
  }

  /** Containers with failures on record. */
  get size(): number {
    return this.#entries.size;
  }

  // A failure older than one cap is forgotten, so the map holds only
  // containers that failed recently.
  #purge(now: number): void {
    for (const [uuid, e] of this.#entries) if (now - e.until > this.#max) this.#entries.delete(uuid);
  }
}
