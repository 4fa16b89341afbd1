/**
 * Watching the scheduler's queue: one shared poller per runner runs the
 * adapter's queue query, and callers wait for the next snapshot instead of
 * querying themselves, so following 100 containers costs one query per
 * interval, not 100.
 *
 * The interval adapts: it doubles after each query that shows no change (up
 * to a cap), to spare the controller on an idle cluster, and drops back to
 * the base interval as soon as something changes or someone needs a fresh
 * view ({@link QueueMonitor.nextSnapshot} with `urgent`).
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { logger } from '../../log.js';
import { checkDuration } from '../../util/duration.js';
import { describeError } from '../../util/errors.js';
import { realClock, type Clock } from '../../util/sleep.js';
import { startTimer, type CancelTimer } from './timer.js';
import type { QueueJob, RunResult } from './adapter.js';

const log = logger('batch:monitor');

/** The queue as one query saw it. */
export interface QueueSnapshot {
  /** Number of the poll that produced it; increases with every poll, failed ones included. */
  readonly seq: number;
  /** The clock's `now()` when the query was started. */
  readonly startedAt: number;
  /** The clock's `now()` when its output had been read. */
  readonly finishedAt: number;
  /** Our jobs by name (container UUID); with duplicates, the one furthest along. */
  readonly jobs: ReadonlyMap<string, QueueJob>;
  /** Every job of ours, duplicates included (cancellation must reach them all). */
  readonly all: readonly QueueJob[];
}

/** Options of {@link QueueMonitor}. */
export interface QueueMonitorOptions {
  /** Base time between the starts of two polls, in ms. */
  intervalMs: number;
  /** Longest interval while nothing changes; default `intervalMs` (no slowing down). */
  maxIntervalMs?: number;
  /** Runs the queue query (resolves whatever the exit status; rejects if it could not run). */
  query: (signal: AbortSignal) => Promise<RunResult>;
  /** Reads our jobs from a successful query's output. */
  parse: (stdout: string, onBadLine: (line: string) => void) => QueueJob[];
  /** For messages: the query's command name. */
  name?: string;
  /** Where time comes from (polls, snapshot times); default the real clock. */
  clock?: Clock;
}

/** Events of {@link QueueMonitor}. */
export interface QueueMonitorEvents {
  /** A poll succeeded. */
  snapshot: [QueueSnapshot];
  /** A poll failed; nothing changes, waiters keep waiting (a failed query means "unknown"). */
  pollError: [Error, RunResult | undefined];
}

interface Waiter {
  minSeq: number;
  resolve: (snapshot: QueueSnapshot) => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** Rejection of {@link QueueMonitor.nextSnapshot} waiters when the monitor stops. */
export class QueueMonitorStoppedError extends Error {
  override name = 'QueueMonitorStoppedError';
  constructor() {
    super('queue monitor stopped');
  }
}

const RANK: Record<QueueJob['state'], number> = { running: 2, other: 1, pending: 0 };

/** Jobs by name; of two jobs with one name, the one furthest along wins. */
export function byName(jobs: readonly QueueJob[]): Map<string, QueueJob> {
  const map = new Map<string, QueueJob>();
  for (const job of jobs) {
    const seen = map.get(job.name);
    if (!seen || RANK[job.state] > RANK[seen.state]) map.set(job.name, job);
  }
  return map;
}

function fingerprint(jobs: readonly QueueJob[]): string {
  return jobs
    .map((j) => `${j.jobId} ${j.name} ${j.rawState} ${j.nice} ${j.pendingReason}`)
    .sort()
    .join('\n');
}

/**
 * Polls the queue and hands out snapshots.
 *
 * The first poll starts as soon as {@link start} is called, then one every
 * interval (measured start to start; polls never overlap).
 *
 * A failed query (non-zero exit, timeout, not installed) means "unknown": no
 * snapshot is produced, so nothing looks gone, and waiters keep waiting for
 * the next successful poll.
 */
export class QueueMonitor extends EventEmitter<QueueMonitorEvents> {
  readonly #base: number;
  readonly #max: number;
  readonly #opts: QueueMonitorOptions;
  #interval: number;
  #running = false;
  #timer: CancelTimer | undefined;
  readonly #clock: Clock;
  #nextAt = 0;
  #lastStartedAt = 0;
  #inFlight: Promise<void> | undefined;
  #pollAbort: AbortController | undefined;
  #seq = 0;
  #latest: QueueSnapshot | undefined;
  #lastPrint: string | undefined;
  #waiters = new Set<Waiter>();
  #polls = 0;

  constructor(options: QueueMonitorOptions) {
    super();
    if (!(options.intervalMs > 0)) throw new RangeError(`QueueMonitor: intervalMs must be > 0, got ${options.intervalMs}`);
    checkDuration('QueueMonitor: intervalMs', options.intervalMs);
    if (options.maxIntervalMs !== undefined) checkDuration('QueueMonitor: maxIntervalMs', options.maxIntervalMs);
    this.#opts = options;
    this.#clock = options.clock ?? realClock;
    this.#base = options.intervalMs;
    this.#max = Math.max(options.intervalMs, options.maxIntervalMs ?? options.intervalMs);
    this.#interval = this.#base;
  }

  /** True between {@link start} and {@link stop}. */
  get running(): boolean {
    return this.#running;
  }

  /** The interval in effect now (between {@link QueueMonitorOptions.intervalMs} and the cap). */
  get interval(): number {
    return this.#interval;
  }

  /** Polls started so far. */
  get polls(): number {
    return this.#polls;
  }

  /** The last successful snapshot, if any. It may be stale: prefer {@link nextSnapshot}. */
  get latest(): QueueSnapshot | undefined {
    return this.#latest;
  }

  /** Starts polling (the first poll right away). Does nothing if already running. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#poll();
  }

  /**
   * Stops polling: cancels the timer, kills a query in progress, and rejects
   * every pending {@link nextSnapshot} with {@link QueueMonitorStoppedError}.
   * Resolves once the query in progress, if any, has ended. Idempotent.
   */
  async stop(): Promise<void> {
    this.#running = false;
    this.#timer?.();
    this.#timer = undefined;
    this.#pollAbort?.abort(new QueueMonitorStoppedError());
    for (const waiter of [...this.#waiters]) {
      this.#removeWaiter(waiter);
      waiter.reject(new QueueMonitorStoppedError());
    }
    await this.#inFlight;
  }

  /**
   * Back to the base interval, and the next poll no later than one base
   * interval after the last one started: there is work (a submission, a
   * cancellation, a job missing).
   */
  hurry(): void {
    this.#interval = this.#base;
    if (!this.#running || !this.#timer) return;
    const due = this.#lastStartedAt + this.#base;
    if (due < this.#nextAt) this.#arm(Math.max(0, due - this.#clock.now()));
  }

  /**
   * Resolves with the first successful snapshot from a poll that *starts*
   * after this call, so it reflects everything done before the call (e.g. a
   * job just submitted). `urgent` calls {@link hurry} first.
   *
   * @throws the signal's reason if `signal` aborts first;
   *   {@link QueueMonitorStoppedError} if the monitor stops first.
   */
  nextSnapshot(signal?: AbortSignal, urgent = false): Promise<QueueSnapshot> {
    if (urgent) this.hurry();
    return new Promise<QueueSnapshot>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const waiter: Waiter = { minSeq: this.#seq + 1, resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          this.#removeWaiter(waiter);
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.add(waiter);
    });
  }

  #removeWaiter(waiter: Waiter): void {
    this.#waiters.delete(waiter);
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }

  #poll(): void {
    const seq = ++this.#seq;
    this.#polls++;
    const startedAt = this.#clock.now();
    this.#lastStartedAt = startedAt;
    const abort = new AbortController();
    this.#pollAbort = abort;
    const name = this.#opts.name ?? 'queue query';
    // new Promise() turns a query that throws synchronously into a failed poll.
    const inFlight: Promise<void> = new Promise<RunResult>((resolve) => resolve(this.#opts.query(abort.signal)))
      .then(
        (result) => {
          if (abort.signal.aborted) return;
          if (result.code !== 0) {
            const why = result.stderr.trim() || `exit ${result.code ?? result.signal}`;
            this.#failed(new Error(`${name} failed: ${why}`), result);
            return;
          }
          let all: QueueJob[];
          try {
            all = this.#opts.parse(result.stdout, (line) => log('ignoring unparsable %s line %o', name, line));
          } catch (err) {
            // Output we cannot read says nothing about our jobs: a failed
            // query ("unknown"), never an empty queue that would make every
            // job look vanished.
            this.#failed(new Error(`${name} answered something unreadable: ${describeError(err)}`), result);
            return;
          }
          this.#succeeded({ seq, startedAt, finishedAt: this.#clock.now(), jobs: byName(all), all });
        },
        (err: unknown) => {
          if (abort.signal.aborted) return;
          this.#failed(err instanceof Error ? err : new Error(describeError(err)), undefined);
        },
      )
      .finally(() => {
        if (this.#pollAbort === abort) this.#pollAbort = undefined;
        if (this.#inFlight === inFlight) this.#inFlight = undefined;
        if (this.#running && !abort.signal.aborted) this.#schedule(startedAt);
      });
    this.#inFlight = inFlight;
  }

  #schedule(lastStartedAt: number): void {
    const elapsed = Math.max(0, this.#clock.now() - lastStartedAt);
    // Like a ticker that drops the ticks it missed: the next interval boundary.
    this.#arm(this.#interval - (elapsed % this.#interval));
  }

  #arm(delay: number): void {
    this.#timer?.();
    this.#nextAt = this.#clock.now() + delay;
    this.#timer = startTimer(this.#clock, delay, () => {
      this.#timer = undefined;
      if (this.#running) this.#poll();
    });
  }

  #succeeded(snapshot: QueueSnapshot): void {
    const print = fingerprint(snapshot.all);
    // Nothing changed and nobody hurried us: slow down, up to the cap.
    if (print === this.#lastPrint) this.#interval = Math.min(this.#max, this.#interval * 2);
    else this.#interval = this.#base;
    this.#lastPrint = print;
    this.#latest = snapshot;
    for (const waiter of [...this.#waiters]) {
      if (waiter.minSeq <= snapshot.seq) {
        this.#removeWaiter(waiter);
        waiter.resolve(snapshot);
      }
    }
    this.#emitSafely(() => this.emit('snapshot', snapshot));
  }

  // A throwing listener must not break the poll loop.
  #emitSafely(emit: () => void): void {
    try {
      emit();
    } catch (err) {
      log('listener threw: %O', err);
    }
  }

  #failed(err: Error, result: RunResult | undefined): void {
    log('queue poll failed: %s', err.message);
    // Unknown is not "unchanged": keep the base interval so it recovers fast.
    this.#interval = this.#base;
    this.#emitSafely(() => this.emit('pollError', err, result));
  }
}
