/**
 * The Dispatcher: polls the API for containers this token may run, locks
 * them, hands each to `runContainer` with a stream of newer records, and
 * cleans up after runners. The behaviour is the Go library's
 * (sdk/go/dispatch), without its known pitfalls; see the README for the rules.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import { ArvadosClient } from '../client/client.js';
import { ArvadosApiError } from '../client/errors.js';
import { sleep } from '../util/sleep.js';
import { deferred } from '../deferred.js';
import { logger } from '../log.js';
import type { ApiClientAuthorization, Container, ContainerState, Filter } from '../types.js';
import { assertContainerUuid } from '../uuid.js';
import { Throttle } from './throttle.js';
import { UpdateStream, type ContainerUpdates, type StreamEndReason } from './updates.js';

const log = logger('dispatcher');

/**
 * Runs one container: starts it if it is Locked, or resumes watching it if it
 * is already Running, and returns once the container is finished or
 * `updates` has ended (then it should stop the container if it still runs).
 * `updates` yields newer records of the container, latest-wins.
 */
export type RunContainer = (dispatcher: Dispatcher, container: Container, updates: ContainerUpdates) => Promise<void>;

/** Options of {@link Dispatcher}. */
export interface DispatcherOptions {
  /** Called once per container this dispatcher takes on. */
  runContainer: RunContainer;
  /** Default: `ArvadosClient.fromEnv()`. */
  client?: ArvadosClient;
  /** Milliseconds between queue polls. Default 10 000. */
  pollInterval?: number;
  /** Page size of container queries. Default 100. */
  batchSize?: number;
  /** Milliseconds between attempts to start the same container. Default 0 (no limit). */
  minRetryPeriod?: number;
  /**
   * Lock requests in flight at once. Default 8, the concurrency the Go SDK's
   * client starts with against one API server.
   */
  lockConcurrency?: number;
  /** Stop gracefully on SIGINT, SIGTERM and SIGQUIT. Default true. */
  handleSignals?: boolean;
  /**
   * How long `run()` waits for runners to settle once stopping, in ms, before
   * it resolves anyway. Default 60 000. A second signal stops waiting at once.
   */
  shutdownTimeout?: number;
}

/** Counters for status displays. */
export interface DispatcherStatus {
  /** Containers with a runner or cleanup in progress. */
  tracked: number;
  /** `runContainer` calls not yet settled. */
  runners: number;
  /** Queued containers with priority > 0 seen in the last poll. */
  queued: number;
  /** Poll cycles completed. */
  cycles: number;
  /** Whether every query of the last cycle succeeded. */
  healthy: boolean;
}

/** Events a Dispatcher emits (for progress displays and metrics). */
export interface DispatcherEvents {
  identified: [auth: ApiClientAuthorization];
  cycle: [status: DispatcherStatus];
  /** Locked by this dispatcher and handed to a runner. */
  locked: [container: Container];
  /** Already locked by this token (e.g. after a restart) and handed to a runner without a lock. */
  adopted: [container: Container];
  /** A runner settled; `error` is set if it rejected. */
  settled: [uuid: string, error: unknown];
  /** After a runner settled the container was still Locked/Running, so the dispatcher released it. */
  released: [uuid: string, action: 'unlocked' | 'cancelled', state: ContainerState];
  /** A runner's updates stream ended; `container` is the record that ended it, if one did. */
  'stream-ended': [uuid: string, reason: StreamEndReason, container: Container | undefined];
  /** Something failed that the dispatcher will retry or has worked around. */
  warning: [message: string];
  stopping: [reason: string];
}

/** Per-container bookkeeping. Kept from the first runner start until cleanup is done. */
interface Tracker {
  readonly uuid: string;
  readonly stream: UpdateStream;
  /** etag (or modified_at) of the last record handed over, to skip unchanged ones. */
  version: string | undefined;
  /** The cycle in which a query last returned this container. */
  seenCycle: number;
  phase: 'running' | 'cleanup' | 'retired';
  /** Cleanup failed (API trouble) and is retried after the next poll. */
  cleanupPending: boolean;
}

const LIVE = new Set<ContainerState>(['Locked', 'Running']);
const UUID_BATCH = 100;

function versionOf(c: Container): string | undefined {
  return c.etag || c.modified_at || undefined;
}

/** Records given to runners are frozen: nobody can change one after handing it over (P-8). */
function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/**
 * Lock order: priority first; equal priorities oldest first (as the API's own
 * priority formula orders them), then by uuid so the order is stable.
 */
function byPriority(a: Container, b: Container): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  const ca = a.created_at ?? '';
  const cb = b.created_at ?? '';
  if (ca !== cb) return ca < cb ? -1 : 1;
  return a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (err === signal.reason || (err instanceof Error && err.name === 'AbortError'));
}

/**
 * Finds containers to run and hands them to `runContainer`.
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
  /** The API client this dispatcher uses. */
  readonly client: ArvadosClient;
  readonly #runContainer: RunContainer;
  readonly #pollInterval: number;
  readonly #batchSize: number;
  readonly #throttle: Throttle;
  readonly #locks: PQueue;
  readonly #handleSignals: boolean;
  readonly #shutdownTimeout: number;
  readonly #trackers = new Map<string, Tracker>();
  readonly #runners = new Map<string, Promise<void>>();
  readonly #retired: string[] = [];
  readonly #pendingCleanups = new Set<Tracker>();
  #auth: ApiClientAuthorization | undefined;
  readonly #identity = deferred<ApiClientAuthorization>();
  #ac = new AbortController();
  #run: Promise<void> | undefined;
  #stopping = false;
  #skipWait: (() => void) | undefined;
  #cycle = 0;
  #status: DispatcherStatus = { tracked: 0, runners: 0, queued: 0, cycles: 0, healthy: true };

  constructor(opts: DispatcherOptions) {
    super();
    if (typeof opts?.runContainer !== 'function') throw new TypeError('runContainer must be a function');
    const positive = (name: string, v: number | undefined, dflt: number, min: number): number => {
      const x = v ?? dflt;
      if (!Number.isFinite(x) || x < min) throw new RangeError(`${name} must be a number >= ${min}, got ${String(v)}`);
      return x;
    };
    this.#runContainer = opts.runContainer;
    this.#pollInterval = positive('pollInterval', opts.pollInterval, 10_000, 1);
    this.#batchSize = Math.floor(positive('batchSize', opts.batchSize, 100, 1));
    this.#throttle = new Throttle(positive('minRetryPeriod', opts.minRetryPeriod, 0, 0));
    this.#locks = new PQueue({ concurrency: Math.floor(positive('lockConcurrency', opts.lockConcurrency, 8, 1)) });
    this.#shutdownTimeout = positive('shutdownTimeout', opts.shutdownTimeout, 60_000, 0);
    this.#handleSignals = opts.handleSignals ?? true;
    this.client = opts.client ?? ArvadosClient.fromEnv();
    // Nobody may be waiting for identity; don't let its rejection go unhandled.
    this.#identity.promise.catch(() => {});
  }

  /** This dispatcher's token, once `run()` has identified it. */
  get auth(): ApiClientAuthorization | undefined {
    return this.#auth;
  }

  /** Current counters. */
  get status(): DispatcherStatus {
    return { ...this.#status, tracked: this.#trackers.size, runners: this.#runners.size };
  }

  /**
   * Identifies the token, then polls until stopped. Rejects if the token is
   * rejected or the API cannot be reached at start; resolves after a stop
   * once runners have settled (or `shutdownTimeout` passed).
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
   * Sets a container's state. `Locked` goes through the lock endpoint, which
   * (unlike a PUT) fails if another dispatcher holds the lock.
   */
  async updateState(uuid: string, state: ContainerState): Promise<void> {
    if (state === 'Locked') return this.lock(uuid);
    try {
      await this.client.updateContainer(uuid, { state }, { signal: this.#ac.signal });
    } catch (err) {
      this.#warn(`error updating container ${uuid} to state "${state}": ${describe(err)}`);
      throw err;
    }
  }

  /** Locks a container for this token (`POST .../lock`). */
  async lock(uuid: string): Promise<void> {
    await this.client.lockContainer(uuid, { signal: this.#ac.signal });
  }

  /** Unlocks a container this token locked (`POST .../unlock`). */
  async unlock(uuid: string): Promise<void> {
    await this.client.unlockContainer(uuid, { signal: this.#ac.signal });
  }

  /**
   * Starts tracking a container outside the poll, e.g. one whose batch job
   * was found at startup. Waits until `run()` has identified the token (so a
   * container locked by this token is recognised as its own). Does nothing if
   * the container is tracked already or locked by another token. A container
   * that is Queued, Complete or Cancelled gets a runner whose updates stream
   * has already ended, so the runner can clean up (e.g. cancel an orphan job).
   */
  async trackContainer(uuid: string): Promise<void> {
    assertContainerUuid(uuid);
    const auth = await this.#identity.promise;
    if (this.#stopping || this.#trackers.has(uuid)) return;
    const c = await this.client.getContainer(uuid, { signal: this.#ac.signal });
    if (c.locked_by_uuid && c.locked_by_uuid !== auth.uuid) return;
    if (this.#stopping || this.#trackers.has(uuid)) return;
    const t = this.#start(c, 'adopted');
    if (!LIVE.has(c.state)) this.#endStream(t, c.state === 'Queued' ? 'requeued' : 'finished', c);
  }

  // ---- lifecycle ------------------------------------------------------------

  async #main(signal?: AbortSignal): Promise<void> {
    const onAbort = (): void => this.#beginStop('abort signal');
    const onSignal = (sig: NodeJS.Signals): void => {
      if (this.#stopping) {
        log('received %s again; not waiting for runners', sig);
        this.#skipWait?.();
      } else {
        this.#beginStop(`received ${sig}`);
      }
    };
    if (signal?.aborted) this.#beginStop('abort signal');
    signal?.addEventListener('abort', onAbort, { once: true });
    const signals: NodeJS.Signals[] = this.#handleSignals ? ['SIGINT', 'SIGTERM', 'SIGQUIT'] : [];
    for (const s of signals) process.on(s, onSignal);
    try {
      await this.#identify();
      while (!this.#stopping) {
        await this.#pollOnce();
        if (this.#stopping) break;
        await sleep(this.#pollInterval, this.#ac.signal).catch(() => {});
      }
    } finally {
      this.#beginStop('finished');
      await this.#drain();
      signal?.removeEventListener('abort', onAbort);
      for (const s of signals) process.off(s, onSignal);
      this.#identity.reject(new Error('the dispatcher stopped'));
      log('stopped');
    }
  }

  async #identify(): Promise<void> {
    try {
      const auth = await this.client.currentAuthorization({ signal: this.#ac.signal });
      this.#auth = auth;
      this.#identity.resolve(auth);
      log('dispatching as token %s (API %s)', auth.uuid, this.client.baseUrl);
      this.emit('identified', auth);
    } catch (err) {
      if (isAbort(err, this.#ac.signal)) return;
      const reason = err instanceof ArvadosApiError && err.status === 401 ? 'the API token was rejected' : 'cannot reach the API server';
      throw new Error(`error getting my token UUID (${reason}): ${describe(err)}`);
    }
  }

  #beginStop(reason: string): void {
    if (this.#stopping) return;
    this.#stopping = true;
    log('stopping: %s', reason);
    this.emit('stopping', reason);
    // Queued lock tasks see the aborted signal and return at once (p-queue's
    // clear() would leave their promises pending forever).
    this.#ac.abort(new Error(`dispatcher stopping: ${reason}`));
    for (const t of this.#trackers.values()) this.#endStream(t, 'stopped');
  }

  /** Waits for runners to settle, up to the shutdown timeout. */
  async #drain(): Promise<void> {
    if (this.#runners.size === 0) return;
    log('waiting up to %d ms for %d runner(s)', this.#shutdownTimeout, this.#runners.size);
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.#shutdownTimeout);
      this.#skipWait = () => resolve('timeout');
    });
    const all = Promise.allSettled(this.#runners.values()).then(() => 'done' as const);
    const how = await Promise.race([all, gaveUp]);
    clearTimeout(timer);
    this.#skipWait = undefined;
    if (how === 'timeout') {
      const left = [...this.#runners.keys()];
      this.#warn(`stopped without waiting for ${left.length} runner(s): ${left.join(', ')}`);
    }
  }

  // ---- the poll cycle -------------------------------------------------------

  async #pollOnce(): Promise<void> {
    const cycle = ++this.#cycle;
    const signal = this.#ac.signal;
    const me = this.#auth!.uuid;
    // Trackers whose cleanup finished before this cycle's queries started can
    // go: every record from here on was read after their last API change.
    for (const uuid of this.#retired.splice(0)) {
      if (this.#trackers.get(uuid)?.phase === 'retired') this.#trackers.delete(uuid);
    }

    const mineQ: Filter[] = [['locked_by_uuid', '=', me]];
    const queuedQ: Filter[] = [['state', '=', 'Queued'], ['priority', '>', '0']];
    const [mine, queued] = await Promise.all([this.#fetch(mineQ, signal), this.#fetch(queuedQ, signal)]);
    if (signal.aborted) return;
    let healthy = mine.ok && queued.ok;

    // A container can show up in both answers if it changed between the two
    // reads; act on the newer record only.
    const latest = new Map<string, Container>();
    for (const c of mine.items) latest.set(c.uuid, c);
    for (const c of queued.items) {
      const prev = latest.get(c.uuid);
      if (!prev || (c.modified_at ?? '') >= (prev.modified_at ?? '')) latest.set(c.uuid, c);
    }
    const candidates: Container[] = [];
    for (const c of latest.values()) if (this.#consider(c, cycle)) candidates.push(c);
    candidates.sort(byPriority);
    this.#status.queued = queued.items.length;
    const locking: Promise<void>[] = [];
    for (const c of candidates) {
      if (!this.#throttle.check(c.uuid)) continue;
      locking.push(this.#locks.add(() => this.#lockAndStart(c, signal)));
    }

    // Tracked containers neither query returned: ask for them by UUID.
    if (healthy) {
      const missed: string[] = [];
      for (const t of this.#trackers.values()) if (t.seenCycle !== cycle && t.phase !== 'retired') missed.push(t.uuid);
      for (let i = 0; i < missed.length; i += UUID_BATCH) {
        const got = await this.#fetch([['uuid', 'in', missed.slice(i, i + UUID_BATCH)]], signal);
        healthy &&= got.ok;
        for (const c of got.items) this.#consider(c, cycle);
      }
      // Only when every query succeeded does "not returned" mean "gone" (P-7).
      if (healthy) {
        for (const uuid of missed) {
          const t = this.#trackers.get(uuid);
          if (t && t.seenCycle !== cycle && !t.stream.ended) {
            log('Container %s not returned by any query, stopping tracking.', uuid);
            this.#endStream(t, 'vanished');
          }
        }
      }
    }
    await Promise.all(locking);
    if (signal.aborted) return;
    for (const t of [...this.#pendingCleanups]) void this.#cleanup(t);
    this.#status = { ...this.status, cycles: cycle, healthy };
    this.emit('cycle', this.status);
  }

  /** Every page of a query; on failure, whatever was read and `ok: false`. */
  async #fetch(filters: Filter[], signal: AbortSignal): Promise<{ ok: boolean; items: Container[] }> {
    const items: Container[] = [];
    let complete = true;
    try {
      for await (const page of this.client.pageContainers({ filters, limit: this.#batchSize }, { signal })) {
        items.push(...page.items);
        // A dropped (malformed) item may be a tracked container: not seeing it proves nothing.
        if (page.dropped > 0) complete = false;
      }
      return { ok: complete, items };
    } catch (err) {
      if (!isAbort(err, signal)) this.#warn(`error getting list of containers: ${describe(err)}`);
      return { ok: false, items };
    }
  }

  /**
   * Applies a record to the container's tracker, if it has one. Returns true
   * if the record is a candidate for locking (untracked, Queued).
   */
  #consider(c: Container, cycle: number): boolean {
    const me = this.#auth!.uuid;
    const t = this.#trackers.get(c.uuid);
    if (c.locked_by_uuid && c.locked_by_uuid !== me) {
      log('ignoring %s locked by %s', c.uuid, c.locked_by_uuid);
      if (t) {
        t.seenCycle = cycle;
        this.#endStream(t, 'locked-by-other', c);
      }
      return false;
    }
    if (t) {
      t.seenCycle = cycle;
      // A retired tracker's records may predate its cleanup; ignore them.
      if (t.phase !== 'running') return false;
      if (LIVE.has(c.state)) {
        const v = versionOf(c);
        if (v === undefined || v !== t.version) {
          t.version = v;
          t.stream.push(deepFreeze(c));
        }
      } else {
        log('update has %s in state %s, closing tracker', c.uuid, c.state);
        this.#endStream(t, c.state === 'Queued' ? 'requeued' : 'finished', c);
      }
      return false;
    }
    if (LIVE.has(c.state)) {
      // Locked by this token but not tracked: a restart, or a lock whose answer was lost.
      if (!this.#throttle.check(c.uuid)) return false;
      this.#start(c, 'adopted');
      this.#trackers.get(c.uuid)!.seenCycle = cycle;
      return false;
    }
    return c.state === 'Queued';
  }

  async #lockAndStart(c: Container, signal: AbortSignal): Promise<void> {
    if (signal.aborted || this.#trackers.has(c.uuid)) return;
    let lock;
    try {
      lock = await this.client.lockContainer(c.uuid, { signal });
    } catch (err) {
      if (isAbort(err, signal)) return;
      if (err instanceof ArvadosApiError && err.status === 422) {
        // Someone else got it first, or it changed; the next poll will tell.
        log('could not lock %s: %s', c.uuid, describe(err));
      } else {
        this.#warn(`error locking container ${c.uuid}: ${describe(err)}`);
      }
      return;
    }
    if (this.#stopping || this.#trackers.has(c.uuid)) return;
    // The listed record plus what the lock changed, so the runner sees who holds it (P-25).
    const record = { ...c, state: lock.state, priority: lock.priority, locked_by_uuid: lock.locked_by_uuid, auth_uuid: lock.auth_uuid };
    this.#start(record, 'locked');
  }

  // ---- runners and cleanup --------------------------------------------------

  #start(c: Container, how: 'locked' | 'adopted'): Tracker {
    const record = deepFreeze(c);
    const t: Tracker = {
      uuid: c.uuid,
      stream: new UpdateStream(),
      version: versionOf(c),
      seenCycle: 0,
      phase: 'running',
      cleanupPending: false,
    };
    this.#trackers.set(c.uuid, t);
    log('%s %s (state %s, priority %d); starting runner', how === 'locked' ? 'locked' : 'adopting', c.uuid, c.state, c.priority);
    this.emit(how, record);
    // Promise.resolve().then(): a runner that throws synchronously still ends up
    // as a rejection, and never runs inside the poll loop. #settled never rejects.
    const runner = Promise.resolve()
      .then(() => this.#runContainer(this, record, t.stream))
      .then(
        () => this.#settled(t, undefined),
        (err: unknown) => this.#settled(t, err ?? new Error('runContainer rejected')),
      );
    this.#runners.set(c.uuid, runner);
    return t;
  }

  async #settled(t: Tracker, error: unknown): Promise<void> {
    try {
      this.#runners.delete(t.uuid);
      this.#endStream(t, 'runner-settled');
      t.phase = 'cleanup';
      this.emit('settled', t.uuid, error);
      if (error !== undefined) {
        const text = `Error running container ${t.uuid}: ${describe(error)}`;
        this.#warn(text);
        if (!this.#stopping) {
          await this.client
            .createLog({ object_uuid: t.uuid, event_type: 'dispatch', properties: { text } }, { signal: this.#ac.signal })
            .catch((err: unknown) => log('could not record the error for %s: %s', t.uuid, describe(err)));
        }
      } else {
        log('runner for %s finished', t.uuid);
      }
      if (this.#stopping) {
        // On stop, states are left as they are: a restarted dispatcher resumes them.
        this.#trackers.delete(t.uuid);
        return;
      }
      await this.#cleanup(t);
    } catch (err) {
      // Only an event listener that throws can get here; never leave it unhandled.
      log('error after the runner for %s settled: %s', t.uuid, describe(err));
      if (t.phase === 'cleanup' && !this.#stopping) this.#pendingCleanups.add(t);
    }
  }

  /**
   * After a runner settled: judged on a fresh record, a container it left
   * Locked is unlocked and one it left Running is cancelled (a Running
   * container cannot go back to Queued, P-16). Retried after the next poll
   * if the API is unavailable.
   */
  async #cleanup(t: Tracker): Promise<void> {
    if (t.phase !== 'cleanup' || this.#stopping) return;
    this.#pendingCleanups.delete(t);
    const signal = this.#ac.signal;
    try {
      const fresh = await this.client.getContainer(t.uuid, { signal });
      if (fresh.locked_by_uuid === this.#auth!.uuid && LIVE.has(fresh.state)) {
        if (fresh.state === 'Locked') {
          log('container %s state is still Locked after its runner finished; unlocking', t.uuid);
          await this.client.unlockContainer(t.uuid, { signal });
          this.emit('released', t.uuid, 'unlocked', fresh.state);
        } else {
          log('container %s state is still Running after its runner finished; cancelling', t.uuid);
          await this.client.updateContainer(t.uuid, { state: 'Cancelled' }, { signal });
          this.emit('released', t.uuid, 'cancelled', fresh.state);
        }
      }
    } catch (err) {
      if (isAbort(err, signal)) return;
      if (!(err instanceof ArvadosApiError && err.status === 404)) {
        this.#warn(`cleanup of ${t.uuid} after its runner finished failed (will retry): ${describe(err)}`);
        this.#pendingCleanups.add(t);
        return;
      }
    }
    t.phase = 'retired';
    this.#retired.push(t.uuid);
  }

  #endStream(t: Tracker, reason: StreamEndReason, container?: Container): void {
    if (t.stream.ended) return;
    t.stream.end(reason);
    if (reason !== 'runner-settled') this.emit('stream-ended', t.uuid, reason, container);
  }

  #warn(message: string): void {
    log(message);
    this.emit('warning', message);
  }
}
