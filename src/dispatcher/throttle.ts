/**
 * `minRetryPeriod`: at most one attempt to start (lock or adopt) the same
 * container per period, as the Go library's throttle does. An attempt is
 * recorded before it is made, whether or not it succeeds; a refused check
 * does not move the clock; entries older than the period are purged.
 *
 * @module
 */
export class Throttle {
  readonly #hold: number;
  readonly #now: () => number;
  readonly #seen = new Map<string, number>();
  #lastPurge = -Infinity;

  /** @param hold - the period in ms; 0 disables throttling. */
  constructor(hold: number, now: () => number = () => performance.now()) {
    this.#hold = hold;
    this.#now = now;
  }

  /** True if an attempt for `uuid` may be made now (and records it). */
  check(uuid: string): boolean {
    if (this.#hold <= 0) return true;
    const now = this.#now();
    this.#purge(now);
    const last = this.#seen.get(uuid);
    if (last !== undefined && now - last < this.#hold) return false;
    this.#seen.set(uuid, now);
    return true;
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
