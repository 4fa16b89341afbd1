/**
 * The locker: the lock phase of a poll cycle. It asks the scheduler for
 * the plan over the cycle's candidates, locks what the plan says,
 * `lockConcurrency` at a time, and hands each locked container to the
 * supervisor in plan order. It also keeps what stops or holds locking: the
 * API's back-pressure (503/429, see pressure.ts), a runner's configuration
 * error (locking stops for good) and a hold (e.g. the cluster lock is not
 * ours).
 *
 * @module
 */
import PQueue from 'p-queue';
import { ArvadosApiError } from '../client/errors.js';
import { logger } from '../log.js';
import type { Container } from '../types.js';
import { describeError, isAbortOf } from '../util/errors.js';
import type { Clock } from '../util/sleep.js';
import type { ContainerApi } from './api.js';
import type { DispatchEntry, DispatcherEvents } from './options.js';
import { FullRecordPrefetch } from './poll.js';
import { ApiPressure } from './pressure.js';
import type { RunnerConfigError, Runner } from './runner.js';
import { plan } from './scheduler.js';
import type { Supervisor } from './supervisor.js';
import { isSupervisor } from './supervisors.js';
import type { RetryBackoff, Throttle } from './throttle.js';
import type { DispatchView } from './view.js';

const log = logger('dispatcher');

/** 503 (overloaded) or 429 (too many requests): the API asks us to back off. */
function isOverload(err: unknown): err is ArvadosApiError {
  return err instanceof ArvadosApiError && (err.status === 503 || err.status === 429);
}

/** What the locker needs of its Dispatcher. */
export interface LockerHost {
  readonly api: ContainerApi;
  readonly clock: Clock;
  /** Records per full-record read. */
  readonly batchSize: number;
  /** `maxJobs` (Infinity: no cap). */
  readonly maxJobs: number;
  /** The supervisor cap (Infinity: none). */
  readonly maxSupervisors: number;
  /** `minRetryPeriod` per container. */
  readonly throttle: Throttle;
  /** The failure back-off per container. */
  readonly backoff: RetryBackoff;
  /** The runner given as `runner`, if any (its capacity). */
  readonly runner: Pick<Runner, 'capacity'> | undefined;
  readonly supervisor: Pick<Supervisor, 'trackers' | 'runners' | 'start'>;
  /** Told the plan; its counters get `atQuota`. */
  readonly view: Pick<DispatchView, 'planned' | 'counters'>;
  /** Whether the dispatcher is stopping. */
  stopping(): boolean;
  /** Told about a failed list or read of containers. */
  listFailed(err: unknown): void;
  /** Logs and emits a warning (redacted). */
  warn(message: string): void;
  /** Emits an event without letting a listener break the bookkeeping. */
  emit<K extends keyof DispatcherEvents>(name: K, ...args: DispatcherEvents[K]): void;
}

/** Plans, takes and hands over the locks of each poll cycle. */
export class Locker {
  readonly #host: LockerHost;
  /** Lock concurrency and the locking pause under an overloaded API. */
  readonly pressure: ApiPressure;
  readonly #locks: PQueue;
  /** Locks of this cycle not yet handed over. */
  #locking = 0;
  #paused: string | undefined;
  #held: string | undefined;

  /** @param concurrency - the configured `lockConcurrency`. */
  constructor(host: LockerHost, concurrency: number) {
    this.#host = host;
    this.pressure = new ApiPressure(concurrency, () => host.clock.now());
    this.#locks = new PQueue({ concurrency });
  }

  /** Locks in flight or waiting to be handed over: the cycle is not idle while any are. */
  get inFlight(): number {
    return this.#locking;
  }

  /** Why locking stopped for good (a runner's configuration error), if it did. */
  get paused(): string | undefined {
    return this.#paused;
  }

  /** Why locking and adopting are held, if they are (see `Dispatcher.hold`). */
  get held(): string | undefined {
    return this.#held;
  }

  /** Holds locking and adopting for `reason`. */
  hold(reason: string): void {
    this.#held = reason;
  }

  /** Ends a hold; returns false if there was none. */
  resume(): boolean {
    if (this.#held === undefined) return false;
    this.#held = undefined;
    return true;
  }

  /** Stops new locks for good: a configuration or environment error would fail every container alike. */
  pause(err: RunnerConfigError): void {
    if (this.#paused !== undefined) return;
    this.#paused = `${err.kind} error: ${describeError(err)}`;
    this.#host.warn(`NOT LOCKING ANY MORE CONTAINERS: the runner reported a ${this.#paused}; fix it and restart the dispatcher`);
    this.#host.emit('paused', this.#paused, err);
  }

  /**
   * Locks candidates (sorted, highest priority first) within the room left
   * by `maxJobs` and the runner's capacity, `lockConcurrency` at a time, and
   * hands them over in that same order: a container is handed to its runner
   * only after every higher-priority lock of the cycle has been answered, so
   * answers that arrive out of order cannot let a lower priority start
   * first. Returns how many candidates are still to be handed over: those
   * that wait for room, a backoff or the API, and those whose lock failed.
   * Those held back because locking stopped for a configuration error are
   * not counted: nothing will change for them until a restart.
   */
  async lockInOrder(candidates: Container[], signal: AbortSignal): Promise<number> {
    const host = this.#host;
    const sup = host.supervisor;
    let supervisors = 0;
    if (Number.isFinite(host.maxSupervisors)) for (const t of sup.trackers.values()) if (isSupervisor(t.record)) supervisors++;
    const runner = host.runner;
    const decided = plan({ records: candidates, complete: true }, {
      running: sup.runners.size,
      supervisors,
      maxJobs: host.maxJobs,
      maxSupervisors: host.maxSupervisors,
      paused: this.#paused,
      held: this.#held,
      apiPausedUntil: this.pressure.pausedUntil,
      retryIn: (uuid, now) => host.backoff.remaining(uuid, now),
      mayAttempt: (uuid, now) => host.throttle.allows(uuid, now),
      capacity: runner?.capacity && ((eligible) => runner?.capacity?.(eligible)),
    }, host.clock.now());
    const toLock = decided.lock;
    // The attempts are charged now, as the scheduler decided them.
    for (const c of toLock) host.throttle.check(c.uuid);
    const waiting: DispatchEntry[] = decided.waiting.map((w) => ({ container: w.container, scheduling_status: `waiting: ${w.why}` }));
    let pending = 0;
    const locking: Array<{ c: Readonly<Container>; lock: Promise<Container | undefined> }> = [];
    this.#locks.concurrency = this.pressure.concurrency;
    // Candidates are summaries: the full records come in batches, a little ahead of the locks.
    const full = new FullRecordPrefetch(host.api, toLock.map((c) => c.uuid), host.batchSize, signal, (err) => host.listFailed(err));
    for (const c of toLock) locking.push({ c, lock: this.#locks.add(() => this.#lock(c, full, signal)) as Promise<Container | undefined> });
    host.view.counters.atQuota = decided.atQuota;
    host.view.planned(waiting, toLock.map((c) => c.uuid));
    this.#locking += locking.length;
    try {
      for (const { lock } of locking) {
        const record = await lock;
        this.#locking--;
        if (record && !host.stopping() && !sup.trackers.has(record.uuid)) sup.start(record, 'locked');
        else if (!record) pending++;
      }
    } catch (err) {
      // #lock never rejects; only an event listener that throws can get here.
      log('error handing over: %s', describeError(err));
      this.#locking = 0;
    }
    return pending + waiting.length - decided.stopped;
  }

  /**
   * Reads the full record of a candidate, then locks it; returns the record
   * to hand over, or undefined. A candidate that could not be read, or is no
   * longer Queued, is left for the next cycle. Never rejects.
   */
  async #lock(c: Container, full: FullRecordPrefetch, signal: AbortSignal): Promise<Container | undefined> {
    const blocked = (): boolean => signal.aborted || this.#host.supervisor.trackers.has(c.uuid) || this.pressure.paused || this.#paused !== undefined || this.#held !== undefined;
    if (blocked()) return undefined;
    const record = await full.get(c.uuid);
    if (!record || record.state !== 'Queued' || blocked()) return undefined;
    let lock;
    try {
      // No retries inside the call: an overloaded API is answered by pausing
      // all locking (see overloadedBy), and anything else is retried by the
      // next poll, which also sees a lock whose answer was lost.
      lock = await this.#host.api.lockContainer(c.uuid, { signal, retries: 0 });
    } catch (err) {
      if (isAbortOf(err, signal)) return undefined;
      if (err instanceof ArvadosApiError && err.status === 422) {
        // Someone else got it first, or it changed; the next poll will tell.
        log('could not lock %s: %s', c.uuid, describeError(err));
      } else {
        this.#host.warn(`error locking container ${c.uuid}: ${describeError(err)}`);
        this.overloadedBy(err);
      }
      return undefined;
    }
    this.pressure.succeeded();
    // The full record plus what the lock changed: the runner sees who
    // holds the lock and the container's own token (the record predates
    // the lock and has neither).
    return { ...record, state: lock.state, priority: lock.priority, locked_by_uuid: lock.locked_by_uuid, auth_uuid: lock.auth_uuid };
  }

  /** If `err` says the API is overloaded (503/429): fewer locks at a time, and a pause (see pressure.ts). */
  overloadedBy(err: unknown): void {
    if (!isOverload(err)) return;
    const pressure = this.pressure;
    const pause = pressure.overloaded(err.retryAfter);
    this.#locks.concurrency = pressure.concurrency;
    const until = this.#host.clock.now() + pause;
    this.#host.warn(`the API is overloaded (HTTP ${err.status}): locking paused for ${Math.ceil(pause / 1000)} s, lock concurrency ${pressure.concurrency}`);
    this.#host.emit('api-overloaded', until, pressure.concurrency);
  }
}
