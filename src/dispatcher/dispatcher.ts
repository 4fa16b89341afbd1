/**
 * The Dispatcher: polls the API for containers this token may run, locks
 * them, hands each to its runner with a stream of newer records, releases
 * what runners leave behind, and owns the runner's lifecycle and the
 * process's stop signals. The behaviour is the Go library's
 * (sdk/go/dispatch) without its known pitfalls; docs/design.md says why
 * each rule is there.
 *
 * This file is the façade and the wiring: it makes the parts from the
 * checked options (settings.ts), connects them, runs the loop and keeps
 * the public API. The parts, in the order data flows: queue.ts (the
 * reads), cycle.ts (applying them), locker.ts (the lock phase, with
 * scheduler.ts), supervisor.ts (what is held); beside them lifecycle.ts
 * (stopping), wakeups.ts (event wake-ups), identity.ts (the token) and
 * view.ts (`entries()` and `status`).
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { ArvadosClient } from '../client/client.js';
import type { ClientWarning } from '../client/options.js';
import { deferred } from '../deferred.js';
import { logger } from '../log.js';
import type { ApiClientAuthorization, Container, ContainerState } from '../types.js';
import { describeError, isAbortOf } from '../util/errors.js';
import { Redactor } from '../util/redact.js';
import { realClock, type Clock } from '../util/sleep.js';
import { assertContainerUuid, isContainerUuid } from '../uuid.js';
import { PollCycle } from './cycle.js';
import type { ContainerEventStream } from './events.js';
import { identify } from './identity.js';
import { Lifecycle } from './lifecycle.js';
import { Locker } from './locker.js';
import { PollPacer } from './pacing.js';
import { ContainerQueue } from './queue.js';
import { LIVE, Supervisor } from './supervisor.js';
import type { ContainerApi } from './api.js';
import { RunnerConfigError, type ReleaseAction, type ReleaseOptions, type RunContainer, type Runner } from './runner.js';
import type { DispatchEntry, DispatcherEventOptions, DispatcherEvents, DispatcherOptions, DispatcherStatus } from './options.js';
import { eventOptionsOf, pollPlanOf, settingsOf } from './settings.js';
import { RetryBackoff, Throttle } from './throttle.js';
import { DispatchView } from './view.js';
import { startWakeups } from './wakeups.js';

export type { RunContainer } from './runner.js';
export type { DispatchEntry, DispatcherEventOptions, DispatcherEvents, DispatcherOptions, DispatcherStatus, IncrementalOptions, InstanceTypeView } from './options.js';

const log = logger('dispatcher');

/**
 * Finds containers to run and hands them to a runner.
 *
 * @example
 * ```ts
 * const dispatcher = new Dispatcher({
 *   async runContainer(d, container, updates) {
 *     // start the container somewhere, then follow it:
 *     for await (const c of updates) if (c.priority === 0) break; // cancel requested
 *   },
 * });
 * await dispatcher.run(); // until SIGINT/SIGTERM/SIGQUIT
 * ```
 */
export class Dispatcher extends EventEmitter<DispatcherEvents> {
  /** The HTTP client: `client`, else `api` if it is one; undefined over an in-memory `api` until {@link client} is read. */
  #http: ArvadosClient | undefined;
  /** The runner given as `runner`, if any. */
  readonly runner: Runner | undefined;
  readonly #runContainer: RunContainer;
  readonly #clock: Clock;
  /** The calls this dispatcher makes (`client` unless `api` was given). */
  readonly #api: ContainerApi;
  readonly #pollInterval: number;
  readonly #backoff: RetryBackoff;
  readonly #redactor: Redactor;
  readonly #identity = deferred<ApiClientAuthorization>();
  #auth: ApiClientAuthorization | undefined;
  #run: Promise<void> | undefined;
  /** `events` as given; undefined when turned off. */
  readonly #eventOpts: DispatcherEventOptions | undefined;
  #listener: ContainerEventStream | undefined;
  /** When the next poll starts. */
  readonly #pacer: PollPacer;
  /** Stopping: the abort signal, the stop signals, the shutdown. */
  readonly #life: Lifecycle;
  /** What is held: runners, streams, releases. */
  readonly #sup: Supervisor;
  /** `entries()` and `status`. */
  readonly #view: DispatchView;
  /** The lock phase, and what stops or holds locking. */
  readonly #locker: Locker;
  /** The poll's queries. */
  readonly #queue: ContainerQueue;
  /** One poll cycle, and the idle waiters. */
  readonly #cycle: PollCycle;

  constructor(opts: DispatcherOptions) {
    super();
    const hasFn = typeof opts?.runContainer === 'function';
    const hasRunner = typeof opts?.runner?.runContainer === 'function';
    if (hasFn === hasRunner) throw new TypeError('give either runContainer (a function) or runner (with runContainer and close)');
    if (hasRunner && typeof opts.runner!.close !== 'function') throw new TypeError('runner.close must be a function');
    this.runner = opts.runner;
    const runner = opts.runner;
    this.#runContainer = runner ? (d, c, u) => runner.runContainer(d, c, u) : opts.runContainer!;
    const clock = (this.#clock = opts.clock ?? realClock);
    const now = (): number => clock.now();
    const set = settingsOf(opts);
    const { batchSize, maxJobs, maxSupervisors } = set;
    this.#pollInterval = set.pollInterval;
    this.#pacer = new PollPacer(clock, set.pollInterval);
    const throttle = new Throttle(set.minRetryPeriod, now);
    const backoff = (this.#backoff = new RetryBackoff(set.failureBackoff.initial, set.failureBackoff.max, now));
    const life = (this.#life = new Lifecycle(
      {
        clock,
        runner,
        runners: () => this.#sup.runners,
        endStreams: () => {
          for (const t of this.#sup.trackers.values()) this.#sup.endStream(t, 'stopped');
        },
        warn: (m) => this.#warn(m),
        emit: (name, ...args) => this.#safeEmit(name, ...args),
      },
      set.stop,
    ));
    // Over an in-memory `api` (tests) there is no HTTP client unless one is given.
    this.#http = opts.client ?? (opts.api instanceof ArvadosClient ? opts.api : opts.api ? undefined : ArvadosClient.fromEnv());
    const api = (this.#api = opts.api ?? this.#http!);
    this.#eventOpts = eventOptionsOf(opts.events);
    const redactor = (this.#redactor = new Redactor([api.credentialsEnv().ARVADOS_API_TOKEN]));
    const warn = (m: string): void => this.#warn(m);
    const emit = <K extends keyof DispatcherEvents>(name: K, ...args: DispatcherEvents[K]): void => this.#safeEmit(name, ...args);
    const listFailed = (err: unknown): void => {
      warn(`error getting list of containers: ${describeError(err)}`);
      this.#locker.overloadedBy(err);
    };
    const sup = (this.#sup = new Supervisor({
      api,
      clock,
      redactor,
      signal: life.signal,
      identity: () => this.#identity.promise,
      stopping: () => life.stopping,
      runContainer: (c, updates) => this.#runContainer(this, c, updates),
      emit,
      warn,
      pause: (err) => this.#locker.pause(err),
      failed: (uuid) => backoff.failed(uuid),
      markSeen: (uuid) => this.#view.markSeen(uuid),
    }));
    const view = (this.#view = new DispatchView({
      clock,
      runner,
      supervisor: sup,
      pressure: () => this.#locker.pressure,
      paused: () => this.#locker.paused,
      held: () => this.#locker.held,
    }));
    const counters = view.counters;
    const locker = (this.#locker = new Locker(
      { api, clock, batchSize, maxJobs, maxSupervisors, throttle, backoff, runner, supervisor: sup, view, stopping: () => life.stopping, listFailed, warn, emit },
      set.lockConcurrency,
    ));
    const pollPlan = pollPlanOf(opts.incremental, now);
    const queue = (this.#queue = new ContainerQueue(api, batchSize, pollPlan, listFailed));
    this.#cycle = new PollCycle({
      api,
      batchSize,
      redactor,
      queue,
      supervisor: sup,
      locker,
      throttle,
      counters,
      me: () => this.#auth!.uuid,
      listFailed,
      warn,
      emit,
      cycleEnded: () => this.emit('cycle', this.status),
    });
    // Nobody may be waiting for identity; don't let its rejection go unhandled.
    this.#identity.promise.catch(() => {});
  }

  /**
   * Holds locking and adopting until {@link resume}: containers already
   * held go on, no other is locked or adopted, and the Queued ones say
   * `waiting: <reason>` in the management API. For a cluster-wide lock
   * that is not (or no longer) ours: another dispatcher may be running the
   * containers this token has locked.
   */
  hold(reason: string): void {
    this.#locker.hold(reason);
  }

  /** Ends a {@link hold}; the next poll locks and adopts again. */
  resume(): void {
    if (this.#locker.resume()) this.#pacer.wake(true);
  }

  /**
   * The API client this dispatcher uses (with an in-memory `api` and no
   * `client`: one from the environment, made when first read).
   */
  get client(): ArvadosClient {
    return (this.#http ??= ArvadosClient.fromEnv());
  }

  /** This dispatcher's token, once `run()` has identified it. */
  get auth(): ApiClientAuthorization | undefined {
    return this.#auth;
  }

  /** Current counters. */
  get status(): DispatcherStatus {
    return this.#view.status();
  }

  /**
   * Identifies the token, attaches the runner, then polls until stopped.
   * Rejects if the token is rejected, the API cannot be reached at start, or
   * the runner's `attach` rejects; resolves after a stop once runners have
   * settled and the runner is closed (or `shutdownTimeout` passed).
   */
  run(opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#run) return Promise.reject(new Error('Dispatcher.run() was already called'));
    this.#run = this.#main(opts.signal);
    return this.#run;
  }

  /** Stops like a signal does. Idempotent; resolves when `run()` has finished. */
  async stop(): Promise<void> {
    this.#life.beginStop('stop() called');
    await this.#run?.catch(() => {});
  }

  /**
   * Resolves at the end of the first poll cycle that starts after this call
   * and finds nothing to do: every query succeeded, no Queued container was
   * waiting to be locked or adopted (not counting those held back because
   * locking stopped for a configuration error: nothing changes for them
   * until a restart), no lock failed, and no runner, release or cleanup was
   * in progress. Also resolves once `run()` has finished. The `idle` event
   * marks the same moments.
   *
   * @example
   * ```ts
   * fake.addContainer({ priority: 1 });
   * await dispatcher.idle(); // the container was run and released
   * ```
   */
  idle(): Promise<void> {
    return this.#cycle.idle();
  }

  /**
   * A snapshot of what this dispatcher holds (each with the runner's
   * `schedulingStatus`, else `locked` / `running`) and of the Queued
   * containers it saw in the last poll but did not lock, with why they wait.
   */
  entries(): DispatchEntry[] {
    return this.#view.entries();
  }

  /** The newest record of a container this dispatcher holds, if it holds it. */
  container(uuid: string): Readonly<Container> | undefined {
    const t = this.#sup.trackers.get(uuid);
    return t && t.phase !== 'retired' ? t.record : undefined;
  }

  /**
   * Stops a container this token holds, as the Go dispatchers' management
   * API does: the runner's `kill` stops its work at once (crunch-run is
   * signalled, a batch job cancelled), and the container is released with
   * `reason` in its `logs` record: a Running container is cancelled (with
   * `runtime_status.error: reason`), a Locked one that has not started is
   * unlocked, so it ends Queued and another attempt can run it; it is not
   * locked again here before `failureBackoff` has passed. Returns what the
   * release did (`none` if the container is not held).
   */
  async kill(uuid: string, reason: string): Promise<ReleaseAction> {
    log('kill %s: %s', uuid, this.#redactor.redact(reason));
    if (this.#sup.trackers.get(uuid)?.phase === 'running') this.#safeEmit('kill', uuid, this.#redactor.redact(reason));
    let action: ReleaseAction;
    try {
      action = await this.release(uuid, { reason });
    } finally {
      // The runner stops even when the release failed: the operator asked for it, and the next cleanup releases.
      if (this.#sup.trackers.get(uuid)?.phase === 'running') {
        try {
          this.runner?.kill?.(uuid, reason);
        } catch (err) {
          this.#warn(`the runner could not stop ${uuid}: ${describeError(err)}`);
        }
      }
    }
    if (action === 'unlocked') this.#backoff.failed(uuid);
    return action;
  }

  /**
   * The one way to let go of a container. Reads a fresh record; unless the
   * container is Locked or Running and locked by this token, does nothing
   * and returns `none`. Otherwise writes a `logs` record (`event_type:
   * "dispatch"`, `properties.text`: the reason, `: <error>`, then the detail
   * lines; redacted, then cut) and then unlocks a Locked container, or
   * cancels a Running one (or a Locked one with `cancel: true`). A
   * cancelled container's `runtime_status` gets `error: reason` and
   * `errorDetail: <error>` unless it already has an `error`, which is kept
   * as it is.
   *
   * Calls for a container whose release is in progress share its promise;
   * a later call reads the record again (and then usually finds nothing to
   * do). A {@link RunnerConfigError} as `error` stops new locks (see the
   * `paused` event); another `error`, or a `detail`, on an unlock counts as
   * a failure of the container and delays its next lock (`failureBackoff`).
   * Works while the dispatcher stops, so runners can release on their way
   * out. Rejects if the API fails (the caller may call again).
   */
  release(uuid: string, opts: ReleaseOptions): Promise<ReleaseAction> {
    if (!isContainerUuid(uuid)) return Promise.reject(new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`));
    if (typeof opts?.reason !== 'string') return Promise.reject(new TypeError('release: reason must be a string'));
    return this.#sup.releaseOnce(uuid, opts);
  }

  /**
   * Sets a container's state. `Locked` goes through the lock endpoint, which
   * (unlike a PUT) fails if another dispatcher holds the lock. Runners finish
   * containers with {@link release} instead.
   */
  async updateState(uuid: string, state: ContainerState): Promise<void> {
    if (state === 'Locked') return this.lock(uuid);
    try {
      await this.#api.updateContainer(uuid, { state }, { signal: this.#life.signal });
    } catch (err) {
      this.#warn(`error updating container ${uuid} to state "${state}": ${describeError(err)}`);
      throw err;
    }
  }

  /** Locks a container for this token (`POST .../lock`). */
  async lock(uuid: string): Promise<void> {
    await this.#api.lockContainer(uuid, { signal: this.#life.signal });
  }

  /** Unlocks a container this token locked (`POST .../unlock`). Runners use {@link release} instead. */
  async unlock(uuid: string): Promise<void> {
    await this.#api.unlockContainer(uuid, { signal: this.#life.signal });
  }

  /**
   * Starts tracking a container outside the poll, e.g. one whose batch job
   * was found at startup. Waits until `run()` has identified the token (so a
   * container locked by this token is recognised as its own). Does nothing if
   * the container is tracked already or locked by another token. A container
   * that is Queued, Complete or Cancelled gets a runner whose updates stream
   * has already ended, so the runner can clean up (e.g. cancel an orphan job),
   * unless `lockedOnly` is set: then only a container Locked or Running by
   * this token is tracked. Nothing is tracked during a {@link hold}: the
   * poll adopts what this token holds once the hold ends.
   */
  async trackContainer(uuid: string, options: { lockedOnly?: boolean } = {}): Promise<void> {
    assertContainerUuid(uuid);
    const auth = await this.#identity.promise;
    if (this.#life.stopping || this.#sup.trackers.has(uuid) || this.#locker.held !== undefined) return;
    const c = await this.#api.getContainer(uuid, { signal: this.#life.signal });
    if (c.uuid !== uuid || (c.locked_by_uuid && c.locked_by_uuid !== auth.uuid)) return;
    if (options.lockedOnly && (c.locked_by_uuid !== auth.uuid || !LIVE.has(c.state))) return;
    if (this.#locker.held !== undefined) return;
    if (this.#life.stopping || this.#sup.trackers.has(uuid)) return;
    const t = this.#sup.start(c, 'adopted');
    if (!LIVE.has(c.state)) this.#sup.endStream(t, c.state === 'Queued' ? 'requeued' : 'finished', t.record);
  }

  async #main(signal?: AbortSignal): Promise<void> {
    const life = this.#life;
    const unwatch = life.watch(signal);
    // The client drops malformed list items on its own (rate-limited
    // warnings); without this, only a debug log would ever say so.
    const onClientWarning = (w: ClientWarning): void => this.#warn(w.message);
    const http = this.#http;
    http?.on('warning', onClientWarning);
    try {
      await identify(this.#api, life.signal, (auth) => {
        this.#auth = auth;
        this.#identity.resolve(auth);
        log('dispatching as token %s (API %s)', auth.uuid, this.#http?.baseUrl ?? 'in memory');
        this.emit('identified', auth);
      });
      if (this.#auth && !life.stopping && this.runner?.attach) {
        try {
          await this.runner.attach(this, life.signal);
        } catch (err) {
          // A stop during the runner's startup is a stop, whatever the runner rejects with.
          if (!isAbortOf(err, life.signal) && !life.stopping) {
            const message = `the runner could not start: ${describeError(err)}`;
            // Keep the kind: a configuration or host problem is not cured by a restart.
            throw err instanceof RunnerConfigError ? new RunnerConfigError(message, err.kind, { cause: err }) : new Error(message);
          }
        }
      }
      if (this.#auth && !life.stopping) {
        this.#listener = startWakeups({
          options: this.#eventOpts,
          client: this.#http,
          clock: this.#clock,
          signal: life.signal,
          pollInterval: this.#pollInterval,
          queue: this.#queue,
          pacer: this.#pacer,
          holds: (uuid) => this.#sup.trackers.has(uuid),
          warn: (m) => this.#warn(m),
        });
      }
      while (!life.stopping) {
        const started = this.#clock.now();
        const regular = this.#pacer.begin(this.#queue.named.size);
        await this.#cycle.pollOnce(regular, life.signal);
        this.#pacer.end(regular);
        if (life.stopping) break;
        await this.#pacer.wait(this.#clock.now() - started, life.signal);
      }
    } finally {
      life.beginStop('finished');
      // Not awaited before the shutdown: a second signal must find its wait in place at once.
      const listenerStopped = this.#listener?.stop();
      await life.shutDown();
      await listenerStopped;
      unwatch();
      http?.off('warning', onClientWarning);
      this.#identity.reject(new Error('the dispatcher stopped'));
      this.#cycle.finish();
      log('stopped');
    }
  }

  #warn(message: string): void {
    const text = this.#redactor.redact(message);
    log(text);
    this.#safeEmit('warning', text);
  }

  /** Emits without letting a throwing listener break the dispatcher's bookkeeping. */
  #safeEmit<K extends keyof DispatcherEvents>(name: K, ...args: DispatcherEvents[K]): void {
    try {
      (this.emit as (n: K, ...a: DispatcherEvents[K]) => boolean)(name, ...args);
    } catch (err) {
      log('a %s listener threw: %s', name, describeError(err));
    }
  }
}
