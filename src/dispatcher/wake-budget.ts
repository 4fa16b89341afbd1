/**
 * How often the event stream may pull a poll forward. An event about a
 * container this dispatcher holds (or a fresh subscription, which may have
 * missed events) wakes the poll loop at once; any other event, about a
 * container that may not exist or concern us, may cause at most one extra
 * poll per poll interval. A flood of such events then costs one poll, not
 * one per event.
 *
 * @module
 */
import { realClock } from '../util/sleep.js';

/** At most one extra poll per `interval` ms. */
export class WakeBudget {
  readonly #interval: number;
  readonly #now: () => number;
  #last = -Infinity;

  constructor(interval: number, now: () => number = realClock.now) {
    this.#interval = interval;
    this.#now = now;
  }

  /** Milliseconds until an extra poll is allowed; 0 if it is now. */
  get waitMs(): number {
    return Math.max(0, this.#last + this.#interval - this.#now());
  }

  /** Records an extra poll starting now. */
  use(): void {
    this.#last = this.#now();
  }
}
