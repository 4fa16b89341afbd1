/**
 * The one limiter every scheduler command of a runner goes through (submit,
 * cancel, renice, accounting): at most `concurrency` at once, and at most
 * `rate.count` started in any `rate.periodMs` (a token bucket whose tokens
 * each come back one period after they were spent, so that "20/1s" holds
 * for every one-second window, bursts included; a bucket refilled
 * continuously lets nearly twice the count through in the first period). A busy
 * controller answers "Socket timed out" when many commands arrive at once
 * (Arvados #14110), and a burst of thousands of queued containers must not
 * become thousands of scheduler commands in a minute.
 *
 * @module
 */
import { sleep, type Clock } from '../../util/sleep.js';
import { startTimer, type CancelTimer } from './timer.js';
import type { SubmitRate } from './options.js';

/** The real clock, monotonic: a wall-clock step must not refill or hold back tokens. */
const MONOTONIC: Clock = { now: () => performance.now(), sleep };

/** A token out: when its command started (provisionally, when it was granted). */
interface Spent {
  at: number;
}

interface Waiter {
  /** Started only when no other waiter is queued (lookups for metrics). */
  background: boolean;
  resolve: (token: Spent) => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
* Counting semaphore plus token bucket, first come first served, never
 * more than `rate.count` starts in any window of `rate.periodMs`, with a
 * background lane whose commands start only when nothing else waits.
 *
 * @example
 * const limiter = new CommandLimiter(3, { count: 20, periodMs: 1000 });
 * const result = await limiter.run(() => spawnCommand('sbatch', args), signal);
 */
export class CommandLimiter {
  readonly #concurrency: number;
  readonly #rate: SubmitRate;
  #running = 0;
  /** Start times (the clock's ms) of the last `rate.count` commands, oldest first: the tokens out. */
  readonly #spent: Spent[] = [];
  #queue: Waiter[] = [];
  #timer: CancelTimer | undefined;
  /** Commands started, for tests and metrics. */
  #started = 0;
  readonly #clock: Clock;

  /** @param clock - Where time comes from (tokens, refill waits); default a monotonic real clock. */
  constructor(concurrency: number, rate: SubmitRate, clock: Clock = MONOTONIC) {
    this.#concurrency = concurrency;
    this.#rate = rate;
    this.#clock = clock;
  }

  /** Commands running now. */
  get running(): number {
    return this.#running;
  }

  /** Commands waiting for a slot or a token (background ones included). */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Commands started since construction. */
  get started(): number {
    return this.#started;
  }

  /**
   * Runs `task` once a slot and a token are free. Aborting `signal` while
   * waiting rejects without running it; once started, the task owns the
   * abort (it holds its slot until it has really ended). A `background`
   * task is passed by every other waiter, so it never delays a submission.
   */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal, background = false): Promise<T> {
    const token = await this.#acquire(signal, background);
    // The window counts from when the command really starts: a busy event
    // loop may run the task a while after the grant.
    token.at = this.#clock.now();
    this.#started++;
    try {
      return await task();
    } finally {
      this.#running--;
      this.#pump();
    }
  }

  #acquire(signal: AbortSignal | undefined, background: boolean): Promise<Spent> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<Spent>((resolve, reject) => {
      const waiter: Waiter = { background, resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          this.#queue = this.#queue.filter((w) => w !== waiter);
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#queue.push(waiter);
      this.#pump();
    });
  }

  #pump(): void {
    const now = this.#clock.now();
    const spent = this.#spent;
    while (spent.length > 0 && now - spent[0].at >= this.#rate.periodMs) spent.shift();
    while (this.#queue.length > 0 && this.#running < this.#concurrency && spent.length < this.#rate.count) {
      const i = this.#queue.findIndex((x) => !x.background);
      const [w] = this.#queue.splice(i === -1 ? 0 : i, 1) as [Waiter];
      if (w.onAbort) w.signal?.removeEventListener('abort', w.onAbort);
      const token = { at: now };
      spent.push(token);
      this.#running++;
      w.resolve(token);
    }
    if (this.#queue.length > 0 && this.#running < this.#concurrency && spent.length >= this.#rate.count && !this.#timer) {
      // Wake when the oldest token comes back.
      const wait = Math.ceil(spent[0].at + this.#rate.periodMs - now);
      this.#timer = startTimer(this.#clock, Math.max(1, wait), () => {
        this.#timer = undefined;
        this.#pump();
      });
    }
  }
}

/** Parses `N/PERIOD` (`20/1s`, `100/1m`, `5/500ms`) with `parseDuration` for the period. */
export function parseRate(text: string, parseDuration: (d: string) => number): SubmitRate {
  const m = /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(text);
  if (!m) throw new RangeError(`"${text}" is not a rate N/PERIOD (e.g. 20/1s)`);
  const count = Number(m[1]);
  const periodMs = parseDuration(m[2]);
  if (!(count >= 1) || !(periodMs > 0)) throw new RangeError(`"${text}": the count must be >= 1 and the period > 0`);
  return { count, periodMs };
}

