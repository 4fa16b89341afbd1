/**
 * Incremental polling: which kind of poll comes next, and the `modified_at`
 * watermark an incremental poll asks from.
 *
 * A *sweep* lists everything the dispatcher decides on (its own
 * containers, the Queued ones, and tracked ones neither returned, by UUID);
 * it is the only poll after which a container may be declared vanished. An
 * *incremental* poll asks only for containers modified since the watermark
 * minus a safety margin. Rules:
 *
 * - The watermark comes from the server's own `modified_at` values (the
 *   newest one in the cluster, read first in every sweep, and the newest one
 *   an incremental answer carried), never from this machine's clock, so a
 *   skew between the two loses nothing.
 * - It only moves forward, and only after a complete poll (every request
 *   answered, no item dropped as malformed).
 * - The filter is `>=` (watermark − margin): equal timestamps are read again,
 *   and so is anything stamped within the margin before the watermark. The
 *   margin covers API servers whose clocks disagree with each other and
 *   transactions that commit after a newer timestamp was read; reading a
 *   record again is harmless (unchanged ones are only marked as seen).
 * - A sweep comes every `polls` polls or `interval` ms, whichever is first,
 *   and after anything that may have hidden a change: a failed or
 *   incomplete poll, an event stream (re)connection, and the start.
 *
 * @module
 */
import { realClock } from '../util/sleep.js';

/** Settings of incremental polling (see {@link DispatcherOptions.incremental}). */
export interface IncrementalOptions {
  /** A sweep at least every this many polls. Default 10. */
  sweepPolls?: number;
  /** A sweep at least every this many ms. Default 60 000. */
  sweepInterval?: number;
  /** ms subtracted from the watermark in the `modified_at >=` filter. Default 5 000. */
  margin?: number;
}

/** What the next regular poll is. */
export type PollKind = { kind: 'sweep'; why: string } | { kind: 'incremental'; since: string };

const ISO = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/;

/**
 * A `modified_at` as epoch nanoseconds (as a bigint: the API gives 9
 * fractional digits), or undefined if it is not the API's UTC format. A
 * malformed value never moves the watermark.
 */
export function modifiedAtNanos(v: unknown): bigint | undefined {
  if (typeof v !== 'string') return undefined;
  const m = ISO.exec(v);
  if (!m) return undefined;
  const secs = Date.parse(`${m[1]}Z`);
  if (Number.isNaN(secs)) return undefined;
  return BigInt(secs) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** Epoch nanoseconds in the API's format. */
function format(nanos: bigint): string {
  const ms = Number(nanos / 1_000_000_000n) * 1000;
  return `${new Date(ms).toISOString().slice(0, 19)}.${String(nanos % 1_000_000_000n).padStart(9, '0')}Z`;
}

/** Decides between sweeps and incremental polls, and keeps the watermark. */
export class PollPlan {
  readonly #polls: number;
  readonly #interval: number;
  readonly #margin: bigint;
  readonly #now: () => number;
  #watermark: bigint | undefined;
  #since = 0;
  #lastSweep = -Infinity;
  #forced: string | undefined = 'start';
  /** Why a sweep was last asked for, and how many times: one asked for while a sweep runs still comes after it. */
  #lastWhy = 'start';
  #forcedCount = 1;
  #sweepCount = 0;

  constructor(opts: Required<IncrementalOptions>, now: () => number = realClock.now) {
    this.#polls = opts.sweepPolls;
    this.#interval = opts.sweepInterval;
    this.#margin = BigInt(Math.round(opts.margin)) * 1_000_000n;
    this.#now = now;
  }

  /** The next regular poll: a sweep when one is due or forced, else an incremental one. */
  next(): PollKind {
    const kind = this.#next();
    if (kind.kind === 'sweep') this.#sweepCount = this.#forcedCount;
    return kind;
  }

  #next(): PollKind {
    if (this.#forced !== undefined) return { kind: 'sweep', why: this.#forced };
    if (this.#since + 1 >= this.#polls) return { kind: 'sweep', why: `${this.#polls} polls` };
    if (this.#now() - this.#lastSweep >= this.#interval) return { kind: 'sweep', why: `${this.#interval} ms` };
    const w = this.#watermark;
    // No server time to start from (an empty cluster, or a malformed
    // answer): a query without a lower bound would list every container
    // ever run, so sweep instead.
    if (w === undefined) return { kind: 'sweep', why: 'no watermark' };
    return { kind: 'incremental', since: format(w > this.#margin ? w - this.#margin : 0n) };
  }

  /** Makes the next regular poll a sweep (keeps the first reason given), even if a sweep is running now. */
  forceSweep(why: string): void {
    this.#forced ??= why;
    this.#lastWhy = why;
    this.#forcedCount++;
  }

  /** The newest `modified_at` a complete poll saw, for tests and status. */
  get watermark(): string | undefined {
    return this.#watermark === undefined ? undefined : format(this.#watermark);
  }

  /**
   * Records a finished regular poll. `newest`: the `modified_at` values it
   * read that may move the watermark (a sweep's newest in the cluster; an
   * incremental poll's items). An incomplete poll forces a sweep and moves
   * nothing.
   */
  done(kind: PollKind['kind'], complete: boolean, newest: Iterable<unknown>): void {
    if (!complete) {
      this.forceSweep('the last poll was incomplete');
      if (kind === 'incremental') this.#since++;
      return;
    }
    let w = kind === 'sweep' ? undefined : this.#watermark;
    for (const v of newest) {
      const n = modifiedAtNanos(v);
      if (n !== undefined && (w === undefined || n > w)) w = n;
    }
    // A sweep starts the watermark afresh from the server's newest value,
    // so one wrong (e.g. far-future) timestamp lasts one sweep period at most.
    this.#watermark = w;
    if (kind === 'sweep') {
      this.#forced = this.#forcedCount === this.#sweepCount ? undefined : this.#lastWhy;
      this.#since = 0;
      this.#lastSweep = this.#now();
    } else {
      this.#since++;
    }
  }
}
