/**
 * A clock for tests: time moves only when the test says so.
 *
 * @module
 */
import type { Clock } from '../util/sleep.js';

interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly resolve: () => void;
}

/** Lets every promise callback queued so far run (one macrotask turn). */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A {@link Clock} whose time stands still until {@link TestClock.advance}
 * moves it: sleeps end in the order they are due, each at its own time, and
 * the code they wake runs before the next one ends. Give it as the `clock`
 * option of the Dispatcher (or any part that takes one) to test grace
 * periods, back-off and polls without waiting for them.
 *
 * @example
 * ```ts
 * const clock = new TestClock();
 * const done = clock.sleep(1_000).then(() => 'woke');
 * await clock.advance(999); // not yet
 * await clock.advance(1);   // `done` resolves now
 * ```
 */
export class TestClock implements Clock {
  #now: number;
  #seq = 0;
  readonly #timers = new Set<Timer>();

  /** @param start - the time it starts at, epoch ms (default 2026-01-01T00:00:00Z, so runs are reproducible). */
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  /** The test's time, epoch ms. */
  now(): number {
    return this.#now;
  }

  /** Resolves when the clock has been advanced by `ms`; rejects with the signal's reason if aborted first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        this.#timers.delete(timer);
        reject(signal!.reason);
      };
      const timer: Timer = {
        at: this.#now + Math.max(0, Number.isFinite(ms) ? ms : 0),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.#timers.add(timer);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Sleeps that have not ended yet. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the next sleep ends (epoch ms), or undefined when none is pending. */
  get nextAt(): number | undefined {
    return this.#next()?.at;
  }

  /**
   * Moves time forward by `ms`, ending every sleep due on the way in order
   * (time stands at each one's due moment while the code it wakes runs,
   * including sleeps that code starts), and resolves once the code woken
   * has run as far as it can without more time passing.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`advance: ms must be >= 0, got ${String(ms)}`);
    const end = this.#now + ms;
    await turn();
    for (let t = this.#next(); t && t.at <= end; t = this.#next()) {
      this.#timers.delete(t);
      this.#now = Math.max(this.#now, t.at);
      t.resolve();
      await turn();
    }
    this.#now = end;
    await turn();
  }

  /** Moves time to the next pending sleep's end and ends it (and any due with it); false if none is pending. */
  async next(): Promise<boolean> {
    const t = this.#next();
    if (!t) return false;
    await this.advance(t.at - this.#now);
    return true;
  }

  /** Lets the code already woken run as far as it can, without moving time. */
  async settle(): Promise<void> {
    await turn();
    await turn();
  }

  #next(): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.#timers) if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    return best;
  }
}
