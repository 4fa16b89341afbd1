/**
 * The Dispatcher's options, checked and with their defaults: every number
 * a Dispatcher works with comes from here, so a bad option fails the
 * constructor with a RangeError naming it, before anything is made.
 *
 * @module
 */
import { checkDuration } from '../util/duration.js';
import type { StopOptions } from './lifecycle.js';
import type { DispatcherEventOptions, DispatcherOptions } from './options.js';
import { supervisorCap } from './supervisors.js';
import { PollPlan } from './watermark.js';

/**
 * Page size asked for by default: Arvados' own cap (`API.MaxItemsPerResponse`),
 * as the Go dispatchers ask. A server that caps lower says so in the page's
 * `limit`, and paging goes on from there.
 */
const DEFAULT_BATCH_SIZE = 1000;

function positive(name: string, v: number | undefined, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || Number.isNaN(x) || x < min) throw new RangeError(`${name} must be a number >= ${min}, got ${String(v)}`);
  return x;
}

/** The checked numbers of {@link DispatcherOptions}, defaults filled in (ms for durations). */
export interface Settings {
  readonly pollInterval: number;
  readonly batchSize: number;
  readonly minRetryPeriod: number;
  /** Infinity: no cap. */
  readonly maxJobs: number;
  /** The supervisor cap (Infinity: none). */
  readonly maxSupervisors: number;
  readonly failureBackoff: { readonly initial: number; readonly max: number };
  readonly lockConcurrency: number;
  /** How the dispatcher stops. */
  readonly stop: StopOptions;
}

/**
 * Checks the options and fills in the defaults.
 *
 * @throws RangeError naming the first option that is out of range.
 */
export function settingsOf(opts: DispatcherOptions): Settings {
  const pollInterval = checkDuration('pollInterval', opts.pollInterval ?? 10_000, 1);
  const batchSize = Math.floor(positive('batchSize', opts.batchSize, DEFAULT_BATCH_SIZE, 1));
  const minRetryPeriod = checkDuration('minRetryPeriod', opts.minRetryPeriod ?? 0);
  const maxJobs = Math.floor(positive('maxJobs', opts.maxJobs, Infinity, 1));
  const maxSupervisors = supervisorCap(opts.supervisorFraction, maxJobs);
  const fb = opts.failureBackoff ?? {};
  const failureBackoff = {
    initial: checkDuration('failureBackoff.initial', fb.initial ?? Math.max(pollInterval, minRetryPeriod)),
    max: checkDuration('failureBackoff.max', fb.max ?? 600_000),
  };
  const lockConcurrency = Math.floor(positive('lockConcurrency', opts.lockConcurrency, 8, 1));
  const shutdownTimeout = checkDuration('shutdownTimeout', opts.shutdownTimeout ?? 60_000);
  const handleSignals = opts.handleSignals ?? true;
  const secondSignal = opts.secondSignal ?? 'stop-waiting';
  if (secondSignal !== 'stop-waiting' && secondSignal !== 'exit') {
    throw new RangeError(`secondSignal must be "stop-waiting" or "exit", got ${JSON.stringify(opts.secondSignal)}`);
  }
  return { pollInterval, batchSize, minRetryPeriod, maxJobs, maxSupervisors, failureBackoff, lockConcurrency, stop: { shutdownTimeout, handleSignals, secondSignal } };
}

/** The `events` option as options of the stream; undefined when turned off. */
export function eventOptionsOf(events: DispatcherOptions['events']): DispatcherEventOptions | undefined {
  return events === false ? undefined : events === true || events === undefined ? {} : events;
}

/**
 * The sweeps and incremental polls the `incremental` option asks for;
 * undefined when turned off (every poll is a sweep).
 *
 * @throws RangeError naming the first option that is out of range.
 */
export function pollPlanOf(incremental: DispatcherOptions['incremental'], now: () => number): PollPlan | undefined {
  const inc = incremental === false ? undefined : incremental === true || incremental === undefined ? {} : incremental;
  if (!inc) return undefined;
  return new PollPlan({
    sweepPolls: Math.floor(positive('incremental.sweepPolls', inc.sweepPolls, 10, 1)),
    sweepInterval: positive('incremental.sweepInterval', inc.sweepInterval, 60_000, 0),
    margin: positive('incremental.margin', inc.margin, 5_000, 0),
  }, now);
}
