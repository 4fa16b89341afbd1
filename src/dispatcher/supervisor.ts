/**
 * The supervisor: what happens to a container this dispatcher holds, from
 * hand-over to release. It starts one runner per container with its
 * updates stream, keeps the per-container bookkeeping (the newest record,
 * the stream, the phase), settles a runner (its error is logged, a
 * configuration error pauses locking), releases what runners leave behind
 * (judged on a fresh record: see release.ts), shares concurrent releases of
 * one container, and reports `finished` once. The Dispatcher decides what
 * to hand over and when to stop; this module only follows through.
 *
 * @module
 */
import { logger } from '../log.js';
import type { ApiClientAuthorization, Container, ContainerState } from '../types.js';
import { describeError } from '../util/errors.js';
import type { Redactor } from '../util/redact.js';
import { timeoutSignal, type Clock } from '../util/sleep.js';
import type { ContainerApi } from './api.js';
import { StringPool, freezeShared } from './freeze.js';
import type { DispatcherEvents } from './options.js';
import { releaseContainer } from './release.js';
import { RunnerConfigError, type ReleaseAction, type ReleaseOptions } from './runner.js';
import { UpdateStream, type StreamEndReason } from './updates.js';

const log = logger('dispatcher');

/** Bound on the API calls of one release, so a dead API cannot hold up a runner or shutdown for ever. */
export const RELEASE_TIMEOUT = 30_000;

/** Locked and Running: the states in which a container is held. */
export const LIVE: ReadonlySet<ContainerState> = new Set<ContainerState>(['Locked', 'Running']);

/** Per-container bookkeeping. Kept from the first runner start until cleanup is done. */
export interface Tracker {
  readonly uuid: string;
  readonly stream: UpdateStream;
  /** The newest record read of this container. */
  record: Readonly<Container>;
  /** etag (or modified_at) of the last record handed over, to skip unchanged ones. */
  version: string | undefined;
  /** The cycle in which a query last returned this container. */
  seenCycle: number;
  phase: 'running' | 'cleanup' | 'retired';
  /** What the runner rejected with, for the cleanup. */
  error?: unknown;
  /**
   * A release during the runner's life found the container no longer ours
   * or Locked/Running, or made it so: the cleanup has nothing left to check,
   * so it skips another read of the record.
   */
  settledByRelease: boolean;
  /** The `finished` event was emitted for it. */
  finishedReported?: boolean;
}

/** The version of a record: its etag, else modified_at. */
export function versionOf(c: Readonly<Container>): string | undefined {
  return c.etag || c.modified_at || undefined;
}

/** Strings shared among held records (see freeze.ts); one pool for the process is enough. */
const STRINGS = new StringPool();

/** Freezes a record deeply before it is held or handed over (see freeze.ts). */
export function deepFreeze<T>(v: T): T {
  return freezeShared(v, STRINGS);
}

/** What the supervisor needs of its Dispatcher. */
export interface SupervisorHost {
  readonly api: ContainerApi;
  readonly clock: Clock;
  readonly redactor: Redactor;
  /** The dispatcher's abort signal (aborted on stop). */
  readonly signal: AbortSignal;
  /** This token, once identified. */
  identity(): Promise<ApiClientAuthorization>;
  /** Whether the dispatcher is stopping. */
  stopping(): boolean;
  /** The user's runContainer, bound to the dispatcher. */
  runContainer(container: Readonly<Container>, updates: UpdateStream): Promise<void>;
  /** Emits an event without letting a listener break the bookkeeping. */
  emit<K extends keyof DispatcherEvents>(name: K, ...args: DispatcherEvents[K]): void;
  /** Logs and emits a warning (redacted). */
  warn(message: string): void;
  /** Stops new locks for good. */
  pause(err: RunnerConfigError): void;
  /** Records a failure of the container's own (back-off); returns the delay. */
  failed(uuid: string): number;
  /** Notes when a container was first seen. */
  markSeen(uuid: string): void;
}

/** Runners, their streams and releases of the containers this dispatcher holds. */
export class Supervisor {
  readonly #host: SupervisorHost;
  /** Per-container bookkeeping, by uuid. */
  readonly trackers = new Map<string, Tracker>();
  /** `runContainer` calls not yet settled. */
  readonly runners = new Map<string, Promise<void>>();
  /** Releases in progress (one per container). */
  readonly releases = new Map<string, Promise<ReleaseAction>>();
  /** Trackers whose cleanup is done, to forget at the start of the next poll. */
  readonly retired: string[] = [];
  /** Cleanups that failed, to retry after the next poll. */
  readonly pendingCleanups = new Set<Tracker>();

  constructor(host: SupervisorHost) {
    this.#host = host;
  }

  /**
   * One release per container at a time; later calls share it. Bounded by
   * {@link RELEASE_TIMEOUT}, and by `signal` too if given.
   */
  releaseOnce(uuid: string, opts: ReleaseOptions, signal?: AbortSignal): Promise<ReleaseAction> {
    const running = this.releases.get(uuid);
    if (running) return running;
    const timeout = timeoutSignal(this.#host.clock, RELEASE_TIMEOUT);
    const p = this.#release(uuid, opts, signal ? AbortSignal.any([signal, timeout.signal]) : timeout.signal).finally(() => {
      timeout.cancel();
      this.releases.delete(uuid);
    });
    this.releases.set(uuid, p);
    return p;
  }

  /** Hands a container (locked, or adopted) to its runner with a fresh updates stream, and tracks it. */
  start(c: Container, how: 'locked' | 'adopted'): Tracker {
    const record = deepFreeze(c);
    const t: Tracker = {
      uuid: c.uuid,
      stream: new UpdateStream(),
      record,
      version: versionOf(c),
      seenCycle: 0,
      phase: 'running',
      settledByRelease: false,
    };
    this.trackers.set(c.uuid, t);
    this.#host.markSeen(c.uuid);
    log('%s %s (state %s, priority %d); starting runner', how === 'locked' ? 'locked' : 'adopting', c.uuid, c.state, c.priority);
    // Promise.resolve().then(): a runner that throws synchronously still ends up
    // as a rejection, and never runs inside the poll loop. #settled never rejects.
    const runner = Promise.resolve()
      .then(() => this.#host.runContainer(record, t.stream))
      .then(
        () => this.#settled(t, undefined),
        (err: unknown) => this.#settled(t, err ?? new Error('runContainer rejected')),
      );
    this.runners.set(c.uuid, runner);
    this.#host.emit(how, record);
    return t;
  }

  async #settled(t: Tracker, error: unknown): Promise<void> {
    this.runners.delete(t.uuid);
    this.endStream(t, 'runner-settled');
    t.phase = 'cleanup';
    t.error = error;
    this.#host.emit('settled', t.uuid, error);
    if (error instanceof RunnerConfigError) this.#host.pause(error);
    if (error !== undefined) this.#host.warn(`Error running container ${t.uuid}: ${describeError(error)}`);
    else log('runner for %s finished', t.uuid);
    if (this.#host.stopping()) {
      // On stop, states are left as they are: a restarted dispatcher resumes them.
      this.trackers.delete(t.uuid);
      return;
    }
    await this.cleanup(t);
  }

  /**
   * After a runner settled: releases the container (judged on a fresh
   * record: Locked is unlocked, Running cancelled), unless a release the
   * runner made already settled it. Retried after the next poll if the API
   * is unavailable.
   */
  async cleanup(t: Tracker): Promise<void> {
    if (t.phase !== 'cleanup' || this.#host.stopping()) return;
    this.pendingCleanups.delete(t);
    if (!t.settledByRelease) {
      const opts: ReleaseOptions =
        t.error !== undefined
          ? { reason: `Error running container ${t.uuid}`, error: t.error }
          : { reason: `the dispatcher's runner for container ${t.uuid} returned without finishing it` };
      try {
        await this.releaseOnce(t.uuid, opts, this.#host.signal);
      } catch (err) {
        if (this.#host.stopping()) return;
        this.#host.warn(`cleanup of ${t.uuid} after its runner finished failed (will retry): ${describeError(err)}`);
        this.pendingCleanups.add(t);
        return;
      }
    }
    t.phase = 'retired';
    this.retired.push(t.uuid);
  }

  /**
   * `signal`: for a runner's release only a timeout, not the dispatcher's
   * abort signal, since a runner must be able to release on its way out
   * while the dispatcher stops (a stopped local process cannot be resumed);
   * for the dispatcher's own cleanup also its abort signal, since on stop
   * states are left for a restart.
   */
  async #release(uuid: string, opts: ReleaseOptions, signal: AbortSignal): Promise<ReleaseAction> {
    const me = (await this.#host.identity()).uuid;
    const out = await releaseContainer(this.#host.api, uuid, opts, { me, redactor: this.#host.redactor, signal });
    const t = this.trackers.get(uuid);
    const record = out.after ?? out.fresh;
    if (t && t.phase === 'running' && record) t.record = deepFreeze(record);
    if (t && record) this.reportFinished(t, record);
    if (out.action !== 'none') {
      this.#host.emit('released', uuid, out.action, out.fresh!.state);
      if (opts.detail || (opts.error !== undefined && !(opts.error instanceof RunnerConfigError))) {
        this.#host.warn(`${out.action} container ${uuid}: ${out.text.split('\n').slice(0, 12).join('\n')}`);
      }
    }
    return this.#released(uuid, out.action, opts);
  }

  /** Bookkeeping after a release: the tracker, the failure backoff, a configuration error. */
  #released(uuid: string, action: ReleaseAction, opts: ReleaseOptions): ReleaseAction {
    const t = this.trackers.get(uuid);
    if (t?.phase === 'running') t.settledByRelease = true;
    if (opts.error instanceof RunnerConfigError) {
      this.#host.pause(opts.error);
    } else if (action === 'unlocked' && (opts.error !== undefined || opts.detail)) {
      const delay = this.#host.failed(uuid);
      log('%s failed; not locking it again for %d ms', uuid, delay);
    }
    return action;
  }

  /** Emits `finished` once per held container, when `c` shows it final. */
  reportFinished(t: Tracker, c: Readonly<Container>): void {
    if (t.finishedReported || t.phase === 'retired') return;
    if (c.state !== 'Complete' && c.state !== 'Cancelled') return;
    t.finishedReported = true;
    this.#host.emit('finished', t.uuid, c.state);
  }

  /** Ends a runner's updates stream once, with the reason (and `finished` if the record shows it final). */
  endStream(t: Tracker, reason: StreamEndReason, container?: Readonly<Container>): void {
    if (reason === 'finished' && container) this.reportFinished(t, container);
    if (t.stream.ended) return;
    t.stream.end(reason);
    if (reason !== 'runner-settled') this.#host.emit('stream-ended', t.uuid, reason, container);
  }

  /** Runners, cleanups and releases in progress (the Dispatcher adds its locks in flight). */
  busy(): number {
    let n = this.runners.size + this.releases.size;
    for (const t of this.trackers.values()) if (t.phase === 'cleanup') n++;
    return n;
  }
}
