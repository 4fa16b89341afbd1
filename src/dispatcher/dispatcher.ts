/**
 * The Dispatcher: polls the API for containers this token may run, locks
 * them, hands each to its runner with a stream of newer records, releases
 * what runners leave behind, and owns the runner's lifecycle and the
 * process's stop signals. The behaviour is the Go library's
 * (sdk/go/dispatch) without its known pitfalls; docs/design.md says why
 * each rule is there.
 *
 * @module
 */
import { EventEmitter, setMaxListeners } from 'node:events';
import PQueue from 'p-queue';
import { ArvadosClient } from '../client/client.js';
import type { ClientWarning } from '../client/options.js';
import { ArvadosApiError, ArvadosProtocolError } from '../client/errors.js';
import { deferred, type Deferred } from '../deferred.js';
import { logger } from '../log.js';
import type { ApiClientAuthorization, Container, ContainerState } from '../types.js';
import { describeError, isAbortOf } from '../util/errors.js';
import { checkDuration } from '../util/duration.js';
import { Redactor, redactAndCut } from '../util/redact.js';
import { after, realClock, type Clock } from '../util/sleep.js';
import { assertContainerUuid, isContainerUuid } from '../uuid.js';
import { confirmByDirectRead } from './confirm.js';
import { ContainerEventStream } from './events.js';
import { FullRecordPrefetch, changedSince, fetchFull } from './poll.js';
import { ApiPressure } from './pressure.js';
import { PollPacer } from './pacing.js';
import { ContainerQueue } from './queue.js';
import { LIVE, Supervisor, deepFreeze, versionOf } from './supervisor.js';
import type { ContainerApi } from './api.js';
import { RunnerConfigError, type ReleaseAction, type ReleaseOptions, type RunContainer, type Runner } from './runner.js';
import type { DispatchEntry, DispatcherEventOptions, DispatcherEvents, DispatcherOptions, DispatcherStatus, InstanceTypeView } from './options.js';
import { onStopSignals, type SecondSignal } from './signals.js';
import { RetryBackoff, Throttle } from './throttle.js';
import { PollPlan } from './watermark.js';
import { plan } from './scheduler.js';
import { isSupervisor, supervisorCap } from './supervisors.js';

export type { RunContainer } from './runner.js';
export type { DispatchEntry, DispatcherEventOptions, DispatcherEvents, DispatcherOptions, DispatcherStatus, IncrementalOptions, InstanceTypeView } from './options.js';

const log = logger('dispatcher');

/**
 * Page size asked for by default: Arvados' own cap (`API.MaxItemsPerResponse`),
 * as the Go dispatchers ask. A server that caps lower says so in the page's
 * `limit`, and paging goes on from there.
 */
const DEFAULT_BATCH_SIZE = 1000;
/** Most UUIDs named by events kept for one event-woken poll; beyond it, a regular poll comes at once instead. */
const MAX_NAMED = 1_000;
/** Most distinct malformed UUIDs remembered, so each is warned about once. */
const MAX_BAD_UUIDS = 1_000;

/** 503 (overloaded) or 429 (too many requests): the API asks us to back off. */
function isOverload(err: unknown): err is ArvadosApiError {
  return err instanceof ArvadosApiError && (err.status === 503 || err.status === 429);
}

function positive(name: string, v: number | undefined, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || Number.isNaN(x) || x < min) throw new RangeError(`${name} must be a number >= ${min}, got ${String(v)}`);
  return x;
}

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
  readonly #batchSize: number;
  readonly #maxJobs: number;
  readonly #throttle: Throttle;
  readonly #backoff: RetryBackoff;
  readonly #pressure: ApiPressure;
  readonly #locks: PQueue;
  readonly #handleSignals: boolean;
  readonly #secondSignal: SecondSignal;
  readonly #shutdownTimeout: number;
  readonly #redactor: Redactor;
  readonly #sup: Supervisor;
  readonly #badUuids = new Set<string>();
  /**
   * Tracked containers a list answer of this cycle says are gone, not ours,
   * no longer live, or newly asked to stop (priority 0): each waits for a
   * direct read (see confirm.ts) before a stream ends or a runner sees it.
   */
  readonly #suspects = new Set<string>();
  readonly #identity = deferred<ApiClientAuthorization>();
  #idleWaiters: Array<{ after: number; wait: Deferred<void> }> = [];
  #waiting: DispatchEntry[] = [];
  /** When each held or waiting container was first seen (epoch ms); pruned every cycle. */
  readonly #firstSeen = new Map<string, number>();
  #auth: ApiClientAuthorization | undefined;
  readonly #ac = new AbortController();
  #run: Promise<void> | undefined;
  #stopping = false;
  #finished = false;
  #skipWait: (() => void) | undefined;
  /** A second signal came before the shutdown began waiting: it must not be lost. */
  #skipRequested = false;
  #cycle = 0;
  #locking = 0;
  /** Containers of this cycle that wait to be adopted (throttled). */
  #deferredAdoptions = 0;
  #paused: string | undefined;
  /** Why locking and adopting are held (e.g. the cluster lock is not ours); see {@link hold}. */
  #held: string | undefined;
  readonly #maxSupervisors: number;
  readonly #eventOpts: DispatcherEventOptions | undefined;
  #listener: ContainerEventStream | undefined;
  /** When the next poll starts. */
  readonly #pacer: PollPacer;
  #status = { queued: 0, cycles: 0, healthy: true, atQuota: false };
  /** The poll's queries. */
  readonly #queue: ContainerQueue;

  constructor(opts: DispatcherOptions) {
    super();
    // Every API call, runner and wait of this dispatcher listens to this one
    // signal (lock concurrency alone is 8): many listeners are the design.
    setMaxListeners(0, this.#ac.signal);
    const hasFn = typeof opts?.runContainer === 'function';
    const hasRunner = typeof opts?.runner?.runContainer === 'function';
    if (hasFn === hasRunner) throw new TypeError('give either runContainer (a function) or runner (with runContainer and close)');
    if (hasRunner && typeof opts.runner!.close !== 'function') throw new TypeError('runner.close must be a function');
    this.runner = opts.runner;
    const runner = opts.runner;
    this.#runContainer = runner ? (d, c, u) => runner.runContainer(d, c, u) : opts.runContainer!;
    this.#clock = opts.clock ?? realClock;
    const now = (): number => this.#clock.now();
    this.#pollInterval = checkDuration('pollInterval', opts.pollInterval ?? 10_000, 1);
    this.#pacer = new PollPacer(this.#clock, this.#pollInterval);
    this.#batchSize = Math.floor(positive('batchSize', opts.batchSize, DEFAULT_BATCH_SIZE, 1));
    const minRetry = checkDuration('minRetryPeriod', opts.minRetryPeriod ?? 0);
    this.#throttle = new Throttle(minRetry, now);
    this.#maxJobs = Math.floor(positive('maxJobs', opts.maxJobs, Infinity, 1));
    this.#maxSupervisors = supervisorCap(opts.supervisorFraction, this.#maxJobs);
    const fb = opts.failureBackoff ?? {};
    this.#backoff = new RetryBackoff(
      checkDuration('failureBackoff.initial', fb.initial ?? Math.max(this.#pollInterval, minRetry)),
      checkDuration('failureBackoff.max', fb.max ?? 600_000),
      now,
    );
    const concurrency = Math.floor(positive('lockConcurrency', opts.lockConcurrency, 8, 1));
    this.#pressure = new ApiPressure(concurrency, now);
    this.#locks = new PQueue({ concurrency });
    this.#shutdownTimeout = checkDuration('shutdownTimeout', opts.shutdownTimeout ?? 60_000);
    this.#handleSignals = opts.handleSignals ?? true;
    this.#secondSignal = opts.secondSignal ?? 'stop-waiting';
    if (this.#secondSignal !== 'stop-waiting' && this.#secondSignal !== 'exit') {
      throw new RangeError(`secondSignal must be "stop-waiting" or "exit", got ${JSON.stringify(opts.secondSignal)}`);
    }
    // Over an in-memory `api` (tests) there is no HTTP client unless one is given.
    this.#http = opts.client ?? (opts.api instanceof ArvadosClient ? opts.api : opts.api ? undefined : ArvadosClient.fromEnv());
    this.#api = opts.api ?? this.#http!;
    this.#eventOpts = opts.events === false ? undefined : opts.events === true || opts.events === undefined ? {} : opts.events;
    this.#redactor = new Redactor([this.#api.credentialsEnv().ARVADOS_API_TOKEN]);
    this.#sup = new Supervisor({
      api: this.#api,
      clock: this.#clock,
      redactor: this.#redactor,
      signal: this.#ac.signal,
      identity: () => this.#identity.promise,
      stopping: () => this.#stopping,
      runContainer: (c, updates) => this.#runContainer(this, c, updates),
      emit: (name, ...args) => this.#safeEmit(name, ...args),
      warn: (m) => this.#warn(m),
      pause: (err) => this.#pause(err),
      failed: (uuid) => this.#backoff.failed(uuid),
      markSeen: (uuid) => this.#markSeen(uuid),
    });
    const inc = opts.incremental === false ? undefined : opts.incremental === true || opts.incremental === undefined ? {} : opts.incremental;
    const pollPlan = inc && new PollPlan({
      sweepPolls: Math.floor(positive('incremental.sweepPolls', inc.sweepPolls, 10, 1)),
      sweepInterval: positive('incremental.sweepInterval', inc.sweepInterval, 60_000, 0),
      margin: positive('incremental.margin', inc.margin, 5_000, 0),
    }, now);
    this.#queue = new ContainerQueue(this.#api, this.#batchSize, pollPlan || undefined, (err) => this.#listFailed(err));
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
    this.#held = reason;
  }

  /** Ends a {@link hold}; the next poll locks and adopts again. */
  resume(): void {
    if (this.#held === undefined) return;
    this.#held = undefined;
    this.#pacer.wake(true);
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
    const s: DispatcherStatus = {
      ...this.#status,
      tracked: this.#sup.trackers.size,
      runners: this.#sup.runners.size,
      lockConcurrency: this.#pressure.concurrency,
    };
    const until = this.#pressure.pausedUntil;
    if (until !== undefined) s.pausedUntil = until;
    if (this.#paused !== undefined) s.paused = this.#paused;
    if (this.#held !== undefined) s.held = this.#held;
    return s;
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
    this.#beginStop('stop() called');
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
    if (this.#finished) return Promise.resolve();
    const wait = deferred();
    this.#idleWaiters.push({ after: this.#cycle, wait });
    return wait.promise;
  }

  /**
   * A snapshot of what this dispatcher holds (each with the runner's
   * `schedulingStatus`, else `locked` / `running`) and of the Queued
   * containers it saw in the last poll but did not lock, with why they wait.
   */
  entries(): DispatchEntry[] {
    const held: DispatchEntry[] = [];
    for (const t of this.#sup.trackers.values()) {
      if (t.phase === 'retired') continue;
      const status = t.phase === 'cleanup' ? 'releasing' : (this.runner?.schedulingStatus?.(t.uuid) ?? (t.record.state === 'Running' ? 'running' : 'locked'));
      held.push({ container: t.record, scheduling_status: status });
    }
    const all = [...held, ...this.#waiting.filter((e) => !this.#sup.trackers.has(e.container.uuid))];
    return all.map((e) => {
      const seen = this.#firstSeen.get(e.container.uuid);
      return {
        ...e,
        first_seen_at: new Date(seen ?? this.#clock.now()).toISOString(),
        instance_types: this.#instanceTypes(e.container),
      };
    });
  }

  /** The runner's instance types for a container; a throwing runner counts as none. */
  #instanceTypes(c: Readonly<Container>): readonly InstanceTypeView[] {
    try {
      return this.runner?.instanceTypes?.(c) ?? [];
    } catch (err) {
      log('instanceTypes(%s) threw: %s', c.uuid, describeError(err));
      return [];
    }
  }

  #markSeen(uuid: string): void {
    if (!this.#firstSeen.has(uuid)) this.#firstSeen.set(uuid, this.#clock.now());
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
      await this.#api.updateContainer(uuid, { state }, { signal: this.#ac.signal });
    } catch (err) {
      this.#warn(`error updating container ${uuid} to state "${state}": ${describeError(err)}`);
      throw err;
    }
  }

  /** Locks a container for this token (`POST .../lock`). */
  async lock(uuid: string): Promise<void> {
    await this.#api.lockContainer(uuid, { signal: this.#ac.signal });
  }

  /** Unlocks a container this token locked (`POST .../unlock`). Runners use {@link release} instead. */
  async unlock(uuid: string): Promise<void> {
    await this.#api.unlockContainer(uuid, { signal: this.#ac.signal });
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
    if (this.#stopping || this.#sup.trackers.has(uuid) || this.#held !== undefined) return;
    const c = await this.#api.getContainer(uuid, { signal: this.#ac.signal });
    if (c.uuid !== uuid || (c.locked_by_uuid && c.locked_by_uuid !== auth.uuid)) return;
    if (options.lockedOnly && (c.locked_by_uuid !== auth.uuid || !LIVE.has(c.state))) return;
    if (this.#held !== undefined) return;
    if (this.#stopping || this.#sup.trackers.has(uuid)) return;
    const t = this.#sup.start(c, 'adopted');
    if (!LIVE.has(c.state)) this.#sup.endStream(t, c.state === 'Queued' ? 'requeued' : 'finished', t.record);
  }

  // ---- lifecycle ------------------------------------------------------------

  async #main(signal?: AbortSignal): Promise<void> {
    const onAbort = (): void => this.#beginStop('abort signal');
    if (signal?.aborted) this.#beginStop('abort signal');
    signal?.addEventListener('abort', onAbort, { once: true });
    const removeSignals = this.#handleSignals ? onStopSignals((sig, n) => this.#onSignal(sig, n)) : undefined;
    // The client drops malformed list items on its own (rate-limited
    // warnings); without this, only a debug log would ever say so.
    const onClientWarning = (w: ClientWarning): void => this.#warn(w.message);
    const http = this.#http;
    http?.on('warning', onClientWarning);
    try {
      await this.#identify();
      if (this.#auth && !this.#stopping && this.runner?.attach) {
        try {
          await this.runner.attach(this, this.#ac.signal);
        } catch (err) {
          // A stop during the runner's startup is a stop, whatever the runner rejects with.
          if (!isAbortOf(err, this.#ac.signal) && !this.#stopping) {
            const message = `the runner could not start: ${describeError(err)}`;
            // Keep the kind: a configuration or host problem is not cured by a restart.
            throw err instanceof RunnerConfigError ? new RunnerConfigError(message, err.kind, { cause: err }) : new Error(message);
          }
        }
      }
      if (this.#auth && !this.#stopping) this.#listen();
      while (!this.#stopping) {
        const started = this.#clock.now();
        const regular = this.#pacer.begin(this.#queue.named.size);
        await this.#pollOnce(regular);
        this.#pacer.end(regular);
        if (this.#stopping) break;
        await this.#pacer.wait(this.#clock.now() - started, this.#ac.signal);
      }
    } finally {
      this.#beginStop('finished');
      // Not awaited before the shutdown: a second signal must find its wait in place at once.
      const listenerStopped = this.#listener?.stop();
      await this.#shutDown();
      await listenerStopped;
      signal?.removeEventListener('abort', onAbort);
      removeSignals?.();
      http?.off('warning', onClientWarning);
      this.#identity.reject(new Error('the dispatcher stopped'));
      this.#finished = true;
      for (const w of this.#idleWaiters.splice(0)) w.wait.resolve();
      log('stopped');
    }
  }

  /** Starts the event stream listener, unless turned off; it only ever wakes the poll loop. */
  #listen(): void {
    const o = this.#eventOpts;
    // The event stream is the API server's websocket: none over an in-memory API.
    const client = this.#http;
    if (!o || !client) return;
    const signal = this.#ac.signal;
    const url = o.url ?? (async (): Promise<string | undefined> => {
      const doc = await client.discovery({ signal });
      return doc.websocketUrl || undefined;
    });
    const listener = new ContainerEventStream({
      url,
      token: client.credentialsEnv().ARVADOS_API_TOKEN,
      insecure: client.insecure,
      requireTls: client.baseUrl.startsWith('https://') && !client.insecure,
      // The stream must trust what the client trusts (e.g. FakeArvados' own certificate).
      ca: o.ca ?? (typeof client.ca === 'string' ? client.ca : client.ca?.slice()),
      clock: this.#clock,
    });
    listener.on('wake', (uuids) => {
      // A new subscription (no uuids) may have missed events; an event about a
      // container we hold concerns us. Anything else waits for the budget:
      // every poll reads the Queued list anyway.
      const concerns = uuids.length === 0 || uuids.some((u) => this.#sup.trackers.has(u));
      if (uuids.length === 0) this.#queue.forceSweep('the event stream (re)connected');
      let regular = uuids.length === 0 || (!this.#queue.incremental && concerns);
      for (const u of uuids) {
        if (this.#queue.named.size >= MAX_NAMED) {
          regular ||= concerns;
          break;
        }
        this.#queue.named.add(u);
      }
      this.#pacer.wake(concerns, regular);
    });
    listener.on('connected', () => log('event stream connected: polling at once on container changes'));
    listener.on('disconnected', (reason, retryIn) => log('event stream lost (%s); polling every %d ms, reconnecting in %d ms', reason, this.#pollInterval, retryIn));
    listener.on('unavailable', (reason, kind) => {
      // A refused cleartext stream is the operator's to know about (once: the listener gives up).
      if (kind === 'cleartext') this.#warn(`no event stream: ${reason}; polling every ${this.#pollInterval} ms`);
      else log('no event stream: %s; polling every %d ms', reason, this.#pollInterval);
    });
    this.#listener = listener;
    listener.start();
  }

  #onSignal(sig: NodeJS.Signals, count: number): void {
    this.#safeEmit('signal', sig, count);
    if (count === 1) {
      this.#beginStop(`received ${sig}`);
    } else if (this.#secondSignal === 'exit') {
      log('received %s again; exiting', sig);
      // The 'signal' listeners have printed by now: writes to stderr are
      // synchronous for files, pipes and terminals on POSIX.
      process.exit(1);
    } else {
      log('received %s again; not waiting for runners', sig);
      this.#skipRequested = true;
      this.#skipWait?.();
    }
  }

  async #identify(): Promise<void> {
    try {
      // The answer repeats the token's secret (api_token): nothing here needs
      // it, and `auth` goes to event listeners that may print it.
      const { api_token: _secret, ...auth } = await this.#api.currentAuthorization({ signal: this.#ac.signal });
      this.#auth = auth;
      this.#identity.resolve(auth);
      log('dispatching as token %s (API %s)', auth.uuid, this.#http?.baseUrl ?? 'in memory');
      this.emit('identified', auth);
    } catch (err) {
      if (isAbortOf(err, this.#ac.signal)) return;
      // Say which side is wrong: "cannot reach" for an answer that arrived
      // sends the operator after the network instead of the server.
      const reason =
        err instanceof ArvadosProtocolError
          ? 'the API server sent an invalid answer'
          : !(err instanceof ArvadosApiError) || err.status === 0
            ? 'cannot reach the API server'
            : err.status === 401
              ? 'the API token was rejected'
              : 'the API server answered with an error';
      throw new Error(`error getting my token UUID (${reason}): ${describeError(err)}`);
    }
  }

  #beginStop(reason: string): void {
    if (this.#stopping) return;
    this.#stopping = true;
    log('stopping: %s', reason);
    this.#safeEmit('stopping', reason);
    // Queued lock tasks see the aborted signal and return at once (p-queue's
    // clear() would leave their promises pending forever).
    this.#ac.abort(new Error(`dispatcher stopping: ${reason}`));
    for (const t of this.#sup.trackers.values()) this.#sup.endStream(t, 'stopped');
  }

  /**
   * Waits for runners to settle, then closes the runner, both within one
   * `shutdownTimeout` (a second signal stops the waiting at once). The runner
   * is closed even when its containers did not settle in time.
   */
  async #shutDown(): Promise<void> {
    let cancelTimer: (() => void) | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => {
      cancelTimer = after(this.#clock, this.#shutdownTimeout, () => resolve('timeout'));
      this.#skipWait = () => resolve('timeout');
      if (this.#skipRequested) resolve('timeout');
    });
    try {
      if (this.#sup.runners.size > 0) {
        log('waiting up to %d ms for %d runner(s)', this.#shutdownTimeout, this.#sup.runners.size);
        const all = Promise.allSettled(this.#sup.runners.values()).then(() => 'done' as const);
        if ((await Promise.race([all, gaveUp])) === 'timeout') {
          const left = [...this.#sup.runners.keys()];
          this.#warn(`stopped without waiting for ${left.length} runner(s): ${left.join(', ')}`);
        }
      }
      if (this.runner) {
        const closed = Promise.resolve()
          .then(() => this.runner!.close())
          .then(
            () => 'done' as const,
            (err: unknown) => {
              this.#warn(`closing the runner failed: ${describeError(err)}`);
              return 'done' as const;
            },
          );
        if ((await Promise.race([closed, gaveUp])) === 'timeout') this.#warn('stopped without waiting for the runner to close');
      }
    } finally {
      cancelTimer?.();
      this.#skipWait = undefined;
    }
  }

  // ---- the poll cycle -------------------------------------------------------

  /**
   * One poll. A regular one is a sweep or an incremental poll (see
   * watermark.ts); one woken by events between regular ones reads only the
   * containers the events named. Every kind also lists the Queued
   * containers: lock order is decided over the whole queue.
   */
  async #pollOnce(regular: boolean): Promise<void> {
    const cycle = ++this.#cycle;
    const signal = this.#ac.signal;
    this.#deferredAdoptions = 0;
    this.#suspects.clear();
    const me = this.#auth!.uuid;
    // Trackers whose cleanup finished before this cycle's queries started can
    // go: every record from here on was read after their last API change.
    for (const uuid of this.#sup.retired.splice(0)) {
      if (this.#sup.trackers.get(uuid)?.phase === 'retired') this.#sup.trackers.delete(uuid);
    }
    const snapshot = await this.#queue.read(regular, { me, holds: (uuid) => this.#sup.trackers.has(uuid), size: this.#sup.trackers.size }, signal);
    if (signal.aborted) return;
    let healthy = snapshot.complete;
    const sweep = snapshot.sweep;
    const applied = await this.#applySummaries(snapshot.records, cycle, signal, snapshot.fullMine);
    if (signal.aborted) return;
    healthy &&= applied.ok;
    const candidates = applied.candidates;
    this.#status.queued = snapshot.queued;
    const handOver = this.#lockInOrder(candidates, signal);

    // Tracked containers neither query returned: ask for them by UUID. Only
    // a sweep can tell: the other polls do not list unchanged containers.
    if (healthy && sweep) {
      const missed: string[] = [];
      for (const t of this.#sup.trackers.values()) if (t.seenCycle !== cycle && t.phase !== 'retired') missed.push(t.uuid);
      const got = await this.#queue.byUuid(missed, signal);
      healthy &&= got.ok;
      for (const c of got.items) this.#consider(c, cycle);
      // "Not returned" means "gone" only when every query of the sweep
      // succeeded: after a failed one we did not see everything.
      if (healthy) {
        for (const uuid of missed) {
          const t = this.#sup.trackers.get(uuid);
          if (t && t.seenCycle !== cycle && !t.stream.ended) this.#suspects.add(uuid);
        }
      }
    }
    // No stream ends on a list answer alone: a direct read confirms each.
    if (this.#suspects.size > 0) healthy = (await this.#confirmEnds(cycle, signal)) && healthy;
    snapshot.done(healthy);
    const pending = await handOver;
    if (signal.aborted) return;
    for (const t of [...this.#sup.pendingCleanups]) void this.#sup.cleanup(t);
    this.#status = { ...this.#status, cycles: cycle, healthy };
    this.emit('cycle', this.status);
    const idle = healthy && pending === 0 && this.#deferredAdoptions === 0 && this.#sup.busy() + this.#locking === 0;
    if (idle) this.#becameIdle(cycle);
  }

  #becameIdle(cycle: number): void {
    const ready = this.#idleWaiters.filter((w) => cycle > w.after);
    this.#idleWaiters = this.#idleWaiters.filter((w) => cycle <= w.after);
    for (const w of ready) w.wait.resolve();
    this.#safeEmit('idle');
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
  async #lockInOrder(candidates: Container[], signal: AbortSignal): Promise<number> {
    let supervisors = 0;
    if (Number.isFinite(this.#maxSupervisors)) for (const t of this.#sup.trackers.values()) if (isSupervisor(t.record)) supervisors++;
    const decided = plan({ records: candidates, complete: true }, {
      running: this.#sup.runners.size,
      supervisors,
      maxJobs: this.#maxJobs,
      maxSupervisors: this.#maxSupervisors,
      paused: this.#paused,
      held: this.#held,
      apiPausedUntil: this.#pressure.pausedUntil,
      retryIn: (uuid, now) => this.#backoff.remaining(uuid, now),
      mayAttempt: (uuid, now) => this.#throttle.allows(uuid, now),
      capacity: this.runner?.capacity && ((eligible) => this.runner?.capacity?.(eligible)),
    }, this.#clock.now());
    const toLock = decided.lock;
    // The attempts are charged now, as the scheduler decided them.
    for (const c of toLock) this.#throttle.check(c.uuid);
    const waiting: DispatchEntry[] = decided.waiting.map((w) => ({ container: w.container, scheduling_status: `waiting: ${w.why}` }));
    let pending = 0;
    const locking: Array<{ c: Readonly<Container>; lock: Promise<Container | undefined> }> = [];
    this.#locks.concurrency = this.#pressure.concurrency;
    // Candidates are summaries: the full records come in batches, a little ahead of the locks.
    const full = new FullRecordPrefetch(this.#api, toLock.map((c) => c.uuid), this.#batchSize, signal, (err) => this.#listFailed(err));
    for (const c of toLock) locking.push({ c, lock: this.#locks.add(() => this.#lock(c, full, signal)) as Promise<Container | undefined> });
    this.#status.atQuota = decided.atQuota;
    this.#waiting = waiting;
    const seen = new Set([...waiting.map((e) => e.container.uuid), ...toLock.map((c) => c.uuid)]);
    for (const uuid of seen) this.#markSeen(uuid);
    for (const uuid of this.#firstSeen.keys()) if (!seen.has(uuid) && !this.#sup.trackers.has(uuid)) this.#firstSeen.delete(uuid);
    this.#locking += locking.length;
    try {
      for (const { lock } of locking) {
        const record = await lock;
        this.#locking--;
        if (record && !this.#stopping && !this.#sup.trackers.has(record.uuid)) this.#sup.start(record, 'locked');
        else if (!record) pending++;
      }
    } catch (err) {
      // #lock never rejects; only an event listener that throws can get here.
      log('error handing over: %s', describeError(err));
      this.#locking = 0;
    }
    return pending + waiting.length - decided.stopped;
  }

  #listFailed(err: unknown): void {
    this.#warn(`error getting list of containers: ${describeError(err)}`);
    this.#overloadedBy(err);
  }

  /**
   * Applies the listed summaries. A tracked container whose summary is
   * unchanged is only marked as seen; one that changed, and one to adopt,
   * is read in full first (batched `uuid in` requests), so runners only
   * ever see full records; if that read fails it waits for the next cycle
   * (`ok: false` makes this one incomplete). Returns the lock candidates.
   */
  async #applySummaries(
    summaries: Iterable<Container>,
    cycle: number,
    signal: AbortSignal,
    /** The records to adopt are full already (nothing was tracked when they were listed). */
    adoptFull = false,
  ): Promise<{ ok: boolean; candidates: Container[] }> {
    const me = this.#auth!.uuid;
    const wanted: string[] = [];
    const rest: Container[] = [];
    for (const c of summaries) {
      // Only valid UUIDs are ever tracked, so the lookup needs no check of its own.
      const t = this.#sup.trackers.get(c.uuid);
      if (t?.phase === 'running') {
        if (changedSince(c, t.record)) wanted.push(c.uuid);
        else t.seenCycle = cycle;
      } else if (!t && LIVE.has(c.state) && (!c.locked_by_uuid || c.locked_by_uuid === me) && isContainerUuid(c.uuid) && !adoptFull) {
        wanted.push(c.uuid);
      } else {
        rest.push(c);
      }
    }
    const full = await fetchFull(this.#api, wanted, this.#batchSize, signal, (err) => this.#listFailed(err));
    const candidates: Container[] = [];
    for (const uuid of wanted) {
      const record = full.records.get(uuid);
      if (record) {
        if (this.#consider(record, cycle)) candidates.push(record);
      } else {
        // Not read (the request failed, or it was deleted just now): the next cycle looks again.
        const t = this.#sup.trackers.get(uuid);
        if (t) t.seenCycle = cycle;
      }
    }
    for (const c of rest) if (this.#consider(c, cycle)) candidates.push(c);
    return { ok: full.ok, candidates };
  }

  /**
   * Applies a record to the container's tracker, if it has one. Returns true
   * if the record is a candidate for locking (untracked, Queued).
   */
  #consider(c: Container, cycle: number, confirmed = false): boolean {
    if (!isContainerUuid(c.uuid)) {
      // Never let a hostile uuid reach a runner, a URL or a command line; say so once.
      if (!this.#badUuids.has(String(c.uuid)) && this.#badUuids.size < MAX_BAD_UUIDS) {
        this.#badUuids.add(String(c.uuid));
        this.#warn(`ignoring a container record with an invalid uuid ${redactAndCut(JSON.stringify(String(c.uuid)), 80, this.#redactor)}`);
      }
      return false;
    }
    const me = this.#auth!.uuid;
    const t = this.#sup.trackers.get(c.uuid);
    // A list answer about a tracked container is applied only while it says
    // "still ours and live" and does not newly ask it to stop (priority 0
    // makes a runner stop the container); anything else waits for a direct read.
    const stopsIt = !(LIVE.has(c.state) && (!c.locked_by_uuid || c.locked_by_uuid === me)) || (c.priority === 0 && t?.record.priority !== 0);
    if (t && t.phase === 'running' && !confirmed && stopsIt) {
      t.seenCycle = cycle;
      if (!t.stream.ended) this.#suspects.add(c.uuid);
      return false;
    }
    if (c.locked_by_uuid && c.locked_by_uuid !== me) {
      log('ignoring %s locked by %s', c.uuid, c.locked_by_uuid);
      if (t) {
        t.seenCycle = cycle;
        this.#sup.endStream(t, 'locked-by-other', deepFreeze(c));
      }
      return false;
    }
    if (t) {
      t.seenCycle = cycle;
      // A retired tracker's records may predate its cleanup; ignore them.
      if (t.phase !== 'running') return false;
      const record = deepFreeze(c);
      t.record = record;
      if (LIVE.has(c.state)) {
        const v = versionOf(c);
        if (v === undefined || v !== t.version) {
          t.version = v;
          t.stream.push(record);
        }
      } else {
        log('update has %s in state %s, closing tracker', c.uuid, c.state);
        this.#sup.endStream(t, c.state === 'Queued' ? 'requeued' : 'finished', record);
      }
      return false;
    }
    if (LIVE.has(c.state)) {
      // Locked by this token but not tracked: a restart, or a lock whose
      // answer was lost. Throttled like a lock, so a container whose runner
      // keeps returning at once is not restarted on every poll.
      if (this.#held !== undefined) return false;
      if (!this.#throttle.check(c.uuid)) {
        this.#deferredAdoptions++;
        return false;
      }
      this.#sup.start(c, 'adopted');
      this.#sup.trackers.get(c.uuid)!.seenCycle = cycle;
      return false;
    }
    return c.state === 'Queued' && c.priority > 0;
  }

  /**
   * Reads the full record of a candidate, then locks it; returns the record
   * to hand over, or undefined. A candidate that could not be read, or is no
   * longer Queued, is left for the next cycle. Never rejects.
   */
  async #lock(c: Container, full: FullRecordPrefetch, signal: AbortSignal): Promise<Container | undefined> {
    const blocked = (): boolean => signal.aborted || this.#sup.trackers.has(c.uuid) || this.#pressure.paused || this.#paused !== undefined || this.#held !== undefined;
    if (blocked()) return undefined;
    const record = await full.get(c.uuid);
    if (!record || record.state !== 'Queued' || blocked()) return undefined;
    let lock;
    try {
      // No retries inside the call: an overloaded API is answered by pausing
      // all locking (see #overloadedBy), and anything else is retried by the
      // next poll, which also sees a lock whose answer was lost.
      lock = await this.#api.lockContainer(c.uuid, { signal, retries: 0 });
    } catch (err) {
      if (isAbortOf(err, signal)) return undefined;
      if (err instanceof ArvadosApiError && err.status === 422) {
        // Someone else got it first, or it changed; the next poll will tell.
        log('could not lock %s: %s', c.uuid, describeError(err));
      } else {
        this.#warn(`error locking container ${c.uuid}: ${describeError(err)}`);
        this.#overloadedBy(err);
      }
      return undefined;
    }
    this.#pressure.succeeded();
    // The full record plus what the lock changed: the runner sees who
    // holds the lock and the container's own token (the record predates
    // the lock and has neither).
    return { ...record, state: lock.state, priority: lock.priority, locked_by_uuid: lock.locked_by_uuid, auth_uuid: lock.auth_uuid };
  }

  /**
   * Reads each suspect directly (bounded, see confirm.ts) and lets only that
   * record decide: gone (404) ends the stream as `vanished`, a record is
   * applied as usual (ending the stream only if it, too, says the container
   * is no longer ours and live). Returns false if any read failed or was
   * left for the next cycle: the cycle is incomplete.
   */
  async #confirmEnds(cycle: number, signal: AbortSignal): Promise<boolean> {
    const uuids = [...this.#suspects];
    this.#suspects.clear();
    const answers = await confirmByDirectRead(this.#api, uuids, signal, (err) => {
      this.#warn(`error confirming a container's state: ${describeError(err)}`);
      this.#overloadedBy(err);
    });
    let complete = true;
    for (const [uuid, a] of answers) {
      const t = this.#sup.trackers.get(uuid);
      if (!t || t.phase !== 'running' || t.stream.ended) continue;
      if (a.kind === 'gone') {
        log('Container %s no longer exists, stopping tracking.', uuid);
        this.#sup.endStream(t, 'vanished');
      } else if (a.kind === 'record') {
        this.#consider(a.record, cycle, true);
      } else {
        complete = false;
      }
    }
    return complete;
  }

  #overloadedBy(err: unknown): void {
    if (!isOverload(err)) return;
    const pause = this.#pressure.overloaded(err.retryAfter);
    this.#locks.concurrency = this.#pressure.concurrency;
    const until = this.#clock.now() + pause;
    this.#warn(`the API is overloaded (HTTP ${err.status}): locking paused for ${Math.ceil(pause / 1000)} s, lock concurrency ${this.#pressure.concurrency}`);
    this.#safeEmit('api-overloaded', until, this.#pressure.concurrency);
  }

  // ---- runners and cleanup --------------------------------------------------

  /** Stops new locks for good: a configuration or environment error would fail every container alike. */
  #pause(err: RunnerConfigError): void {
    if (this.#paused !== undefined) return;
    this.#paused = `${err.kind} error: ${describeError(err)}`;
    this.#warn(`NOT LOCKING ANY MORE CONTAINERS: the runner reported a ${this.#paused}; fix it and restart the dispatcher`);
    this.#safeEmit('paused', this.#paused, err);
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
