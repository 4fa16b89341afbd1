/**
 * `PollPacer`: when the next poll starts. Every `pollInterval` (a regular
 * poll), or sooner when the event stream says a container changed: at once
 * for a change that concerns what is held (or a fresh subscription, which
 * may have missed events), within the wake budget for anything else (see
 * wake-budget.ts); but never sooner after the last poll than
 * {@link MIN_EVENT_POLL_GAP} or that poll's own duration, so a storm of
 * events keeps the dispatcher polling at most half the time.
 *
 * @module
 */
import type { Clock } from '../util/sleep.js';
import { WakeBudget } from './wake-budget.js';

/**
 * The least time between the end of one poll and an event-woken start of
 * the next; the gap also grows to the last poll's duration.
 */
export const MIN_EVENT_POLL_GAP = 25;

/** The poll loop's timing and wake-ups. */
export class PollPacer {
  readonly #clock: Clock;
  readonly #interval: number;
  readonly #budget: WakeBudget;
  /** Something that concerns us changed since the current poll began. */
  #wakeRequested = false;
  /** Events about containers we do not hold arrived: an extra poll when the budget allows. */
  #budgetWake = false;
  /** Ends the wait between polls early (set while waiting). */
  #wakeWait: AbortController | undefined;
  /** When the next regular poll is due, epoch ms on the clock. */
  #nextRegular = 0;

  constructor(clock: Clock, interval: number) {
    this.#clock = clock;
    this.#interval = interval;
    this.#budget = new WakeBudget(interval, () => clock.now());
  }

  /**
   * A poll starts now; returns whether it is a regular one (it is due, or
   * no event named a container to read instead).
   */
  begin(named: number): boolean {
    this.#wakeRequested = false;
    this.#budgetWake = false;
    return this.#clock.now() >= this.#nextRegular || named === 0;
  }

  /** A poll ended; a regular one sets when the next is due. */
  end(regular: boolean): void {
    if (regular) this.#nextRegular = this.#clock.now() + this.#interval;
  }

  /**
   * Asks for an earlier poll. `concerns`: about what is held (or a fresh
   * subscription), so as soon as the gap allows; otherwise within the wake
   * budget. `regular`: the next poll must be a regular one.
   */
  wake(concerns: boolean, regular = false): void {
    if (regular) this.#nextRegular = 0;
    if (concerns) this.#wakeRequested = true;
    else this.#budgetWake = true;
    this.#wakeWait?.abort();
  }

  /** Waits until the next poll is due (see the module notes), or `signal` aborts. */
  async wait(lastPollMs: number, signal: AbortSignal): Promise<void> {
    const clock = this.#clock;
    const earliest = clock.now() + Math.min(this.#interval, Math.max(MIN_EVENT_POLL_GAP, lastPollMs));
    for (;;) {
      if (signal.aborted) return;
      let target = this.#nextRegular;
      if (this.#wakeRequested) target = Math.min(target, earliest);
      else if (this.#budgetWake) target = Math.min(target, Math.max(earliest, clock.now() + this.#budget.waitMs));
      // Polls are at least `earliest` apart, however they were asked for.
      const left = Math.max(target, earliest) - clock.now();
      if (left <= 0) break;
      // A wake ends this sleep early; the next turn works out the new target.
      const wait = new AbortController();
      const onStop = (): void => wait.abort();
      signal.addEventListener('abort', onStop, { once: true });
      this.#wakeWait = wait;
      try {
        await clock.sleep(left, wait.signal).catch(() => {});
      } finally {
        this.#wakeWait = undefined;
        signal.removeEventListener('abort', onStop);
      }
      if (!wait.signal.aborted) break;
    }
    if (!this.#wakeRequested && this.#budgetWake && clock.now() < this.#nextRegular) this.#budget.use();
  }
}
