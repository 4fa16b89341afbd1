/**
 * Back-pressure from the API server: what the Dispatcher does when the API
 * answers 503 (overloaded) or 429 (too many requests), as Arvados' cloud
 * dispatcher does. Each overload answer halves the lock concurrency (down
 * to 1) and pauses locking for the server's `Retry-After`, or else for an
 * exponential backoff (1 s, 2 s, ... capped at 60 s). Every lock that
 * succeeds afterwards raises the concurrency by one again, up to the
 * configured value. Nothing is unlocked or cancelled because of it: held
 * containers keep running, and only new locks wait.
 *
 * @module
 */
import { realClock } from '../util/sleep.js';
import { backoffDelay } from './throttle.js';

/** First pause after an overload answer without `Retry-After`, in ms. */
const FIRST_PAUSE = 1_000;
/** Longest pause, in ms, whatever the server asks for. */
const MAX_PAUSE = 60_000;

/** Lock concurrency and the locking pause, driven by overload answers. */
export class ApiPressure {
  readonly #max: number;
  readonly #now: () => number;
  #concurrency: number;
  #overloads = 0;
  #until = 0;

  /** @param max - the configured lock concurrency. */
  constructor(max: number, now: () => number = realClock.now) {
    this.#max = max;
    this.#concurrency = max;
    this.#now = now;
  }

  /** Lock requests allowed in flight now. */
  get concurrency(): number {
    return this.#concurrency;
  }

  /** Epoch ms until which locking is paused, or undefined when it is not. */
  get pausedUntil(): number | undefined {
    return this.#until > this.#now() ? this.#until : undefined;
  }

  /** True while locking is paused. */
  get paused(): boolean {
    return this.#until > this.#now();
  }

  /**
   * Records an overload answer; returns the pause in ms.
   *
   * @param retryAfter - the server's `Retry-After`, in ms, if it sent one.
   */
  overloaded(retryAfter?: number): number {
    this.#overloads++;
    this.#concurrency = Math.max(1, Math.floor(this.#concurrency / 2));
    const asked = retryAfter !== undefined && Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined;
    const pause = Math.min(MAX_PAUSE, asked ?? backoffDelay(this.#overloads, FIRST_PAUSE, MAX_PAUSE));
    this.#until = Math.max(this.#until, this.#now() + pause);
    return pause;
  }

  /** Records a lock that succeeded: concurrency grows back by one. */
  succeeded(): void {
    this.#overloads = 0;
    if (this.#concurrency < this.#max) this.#concurrency++;
  }
}
