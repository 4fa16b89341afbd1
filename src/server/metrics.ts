/**
 * The Prometheus metrics of a dispatcher, named `arvados_dispatch_*`. Where
 * Arvados' cloud dispatcher has a metric of the same meaning, the name is
 * its own (`queue_entries`, `containers_running`,
 * `containers_longest_wait_time_seconds`, `last_503_time`, `at_quota`), so
 * dashboards carry over. Values that describe the present (queue, running,
 * wait) are computed at scrape time from a {@link QueueView}; the rest are
 * counted from events by the `record*` methods (see `observe.ts`).
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { realClock, type Clock } from '../util/sleep.js';

/** Resolution (ms) of the event-loop delay histogram of the process metrics. */
const EVENT_LOOP_SAMPLE_MS = 1000;

/** Prefix of every metric of ours. */
export const METRIC_PREFIX = 'arvados_dispatch_';

/** What the scrape-time gauges read. */
export interface QueueView {
  /** Containers by state: Queued (seen in the last poll, not held here), Locked, Running. */
  queueEntries(): Partial<Record<'Queued' | 'Locked' | 'Running', number>>;
  /** Containers held here whose crunch-run is running. */
  running(): number;
  /** When the longest-waiting container held here but not yet running was created (ms since epoch), if any. */
  oldestWaiting(): number | undefined;
  /** Whether containers are held back now: `maxJobs`, the runner's capacity, or a scheduler's submit limit. */
  atQuota(): boolean;
  /**
   * Ms since the scheduler's queue was last read, for batch runners;
   * undefined to use the API poll (see {@link DispatchMetrics.markQueueStatus}).
   */
  queueStatusAgeMs?(): number | undefined;
}

/** Outcome classes of a lock request. */
export type LockResult = 'ok' | 'conflict' | 'error';

/** Options of {@link DispatchMetrics}. */
export interface DispatchMetricsOptions {
  /** Adds Node's default process metrics (CPU, memory, event loop lag, ...). Default true. */
  processMetrics?: boolean;
  clock?: Clock;
}

/** prom-client default metrics left out: gauges named like counters (see the constructor). */
const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The registry and its metrics. */
export class DispatchMetrics {
  /** The registry `/metrics` serves. */
  readonly registry = new Registry();
  readonly #clock: Clock;
  #view: QueueView | undefined;
  #lastQueueStatus: number | undefined;
  readonly #lock: Counter<'result'>;
  readonly #api: Histogram<'method'>;
  readonly #last503: Gauge;
  readonly #cmdDuration: Histogram<'command' | 'result'>;
  readonly #cmdErrors: Counter<'command' | 'class'>;
  readonly #submissions: Counter<'result'>;
  readonly #vanished: Counter<'resolution'>;
  readonly #finished: Counter<'reason'>;

  constructor(opts: DispatchMetricsOptions = {}) {
    this.#clock = opts.clock ?? realClock;
    const registers = [this.registry];
    const p = METRIC_PREFIX;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new Gauge({
      name: `${p}queue_entries`,
      help: 'Containers in the queue by state: Queued (waiting for a dispatcher), Locked and Running (held by this one)',
      labelNames: ['state'],
      registers,
      collect() {
        const q = self.#view?.queueEntries() ?? {};
        for (const state of ['Queued', 'Locked', 'Running'] as const) this.set({ state }, q[state] ?? 0);
      },
    });
    new Gauge({
      name: `${p}containers_running`,
      help: 'Containers held by this dispatcher whose crunch-run is running',
      registers,
      collect() {
        this.set(self.#view?.running() ?? 0);
      },
    });
    new Gauge({
      name: `${p}containers_longest_wait_time_seconds`,
      help: 'How long the longest-waiting container held here but not yet running has existed',
      registers,
      collect() {
        const t = self.#view?.oldestWaiting();
        this.set(t === undefined ? 0 : Math.max(0, (self.#clock.now() - t) / 1000));
      },
    });
    new Gauge({
      name: `${p}queue_status_age_seconds`,
      help: "Age of the newest complete view of the queue: the scheduler's status poll, or the API poll for local",
      registers,
      collect() {
        const fromRunner = self.#view?.queueStatusAgeMs?.();
        const age = fromRunner ?? (self.#lastQueueStatus === undefined ? undefined : self.#clock.now() - self.#lastQueueStatus);
        this.set(age === undefined ? 0 : age / 1000);
      },
    });
    new Gauge({
      name: `${p}at_quota`,
      help: '1 while queued containers are held back: max-jobs, the runner is full, or the scheduler refuses submissions for a limit; else 0',
      registers,
      collect() {
        this.set(self.#view?.atQuota() ? 1 : 0);
      },
    });
    this.#last503 = new Gauge({ name: `${p}last_503_time`, help: 'Time of the last 503 answer from the API server (unix seconds)', registers });
    this.#lock = new Counter({ name: `${p}lock_requests_total`, help: 'Container lock requests by result (ok, conflict: another dispatcher or state change, error)', labelNames: ['result'], registers });
    this.#api = new Histogram({ name: `${p}api_request_duration_seconds`, help: 'API request durations (each attempt) by HTTP method', labelNames: ['method'], buckets: SECONDS_BUCKETS, registers });
    this.#cmdDuration = new Histogram({
      name: `${p}scheduler_command_duration_seconds`,
      help: 'Scheduler command durations (sbatch, squeue, bsub, ...) by command and result',
      labelNames: ['command', 'result'],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.#cmdErrors = new Counter({ name: `${p}scheduler_command_errors_total`, help: 'Failed scheduler commands by command and error class', labelNames: ['command', 'class'], registers });
    this.#submissions = new Counter({ name: `${p}submissions_total`, help: 'Job submissions by result', labelNames: ['result'], registers });
    this.#vanished = new Counter({ name: `${p}jobs_vanished_total`, help: 'Jobs that left the scheduler queue unexpectedly, by what was done about their container', labelNames: ['resolution'], registers });
    this.#finished = new Counter({ name: `${p}jobs_finished_total`, help: 'Containers that ended while held here, by reason', labelNames: ['reason'], registers });
    // Counters that exist from the start read 0 rather than being absent, so rate() works from the first scrape.
    for (const result of ['ok', 'conflict', 'error']) this.#lock.inc({ result }, 0);
    // prom-client samples event-loop delay with a timer at this resolution;
    // its default of 10 ms alone cost an idle dispatcher ~3.5 ms of CPU per
    // second (100 wake-ups a second). Once a second still catches a stalled loop.
    if (opts.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
      // `promtool check metrics` rejects gauges named `*_total`; each is the
      // sum of the by-type gauge of the same name without `_total`.
      for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    }
  }

  /** Sets where the scrape-time gauges read from. */
  setView(view: QueueView): void {
    this.#view = view;
  }

  /** One lock request and its result. */
  recordLock(result: LockResult): void {
    this.#lock.inc({ result });
  }

  /** One API request attempt: its method, duration in ms, and HTTP status if one came back. */
  recordApiRequest(method: string, durationMs: number, status: number | undefined): void {
    this.#api.observe({ method: method.toUpperCase() }, durationMs / 1000);
    if (status === 503) this.#last503.set(this.#clock.now() / 1000);
  }

  /** One scheduler command: name (`sbatch`), result (`ok`, `error`), duration in ms, and the class of its error. */
  recordCommand(command: string, result: string, durationMs: number, errorClass?: string): void {
    this.#cmdDuration.observe({ command, result }, durationMs / 1000);
    if (result !== 'ok') this.#cmdErrors.inc({ command, class: errorClass ?? 'unknown' });
  }

  /** One submission and its result (`ok`, `error`, `at-quota`, ...). */
  recordSubmission(result: string): void {
    this.#submissions.inc({ result });
  }

  /** One job that vanished from the queue, and what was done about its container (`cancelled`, `unlocked`, `none`). */
  recordVanished(resolution: string): void {
    this.#vanished.inc({ resolution });
  }

  /** One container that ended, and why (`complete`, `cancelled`, `out-of-memory`, ...). */
  recordFinished(reason: string): void {
    this.#finished.inc({ reason });
  }

  /** A complete API poll has just been read (the queue status age when the runner has no queue of its own). */
  markQueueStatus(): void {
    this.#lastQueueStatus = this.#clock.now();
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Content type of {@link text}. */
  get contentType(): string {
    return this.registry.contentType;
  }
}
