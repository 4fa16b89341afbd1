/**
 * The Runner contract: what a Dispatcher needs from whatever runs its
 * containers (a local process pool, a batch system, a test double).
 *
 * @module
 */
import type { Container } from '../types.js';
import type { ContainerUpdates } from './updates.js';
import type { Dispatcher } from './dispatcher.js';
import type { InstanceTypeView } from './options.js';

/**
 * Runs one container: starts it if it is Locked, or resumes watching it if it
 * is already Running, and returns once the container is finished or
 * `updates` has ended (then it should stop the container if it still runs).
 * `updates` yields newer records of the container, latest-wins.
 */
export type RunContainer = (dispatcher: Dispatcher, container: Readonly<Container>, updates: ContainerUpdates) => Promise<void>;

/**
 * What a runner says about itself, for status lines, metrics and health
 * (read through the {@link Runner} interface only). Batch runners fill in
 * the scheduler fields.
 */
export interface RunnerStatus {
  /** Containers being run. */
  readonly containers: number;
  /** Of those, running now. */
  readonly running: number;
  /** The scheduler's name (`Slurm`, `PBS`…), for batch runners. */
  readonly scheduler?: string;
  /** The scheduler refuses more work for now (a submit limit): submissions are paused. */
  readonly atQuota?: boolean;
  /** Whether the last read of the scheduler's queue succeeded. */
  readonly queueHealthy?: boolean;
  /** Milliseconds since the scheduler's queue was last read (undefined before the first read). */
  readonly queueAgeMs?: number;
  /** The poller's interval now, ms: how stale the queue may normally get. */
  readonly queueIntervalMs?: number;
  /** Of this runner's jobs in the scheduler's queue, how many are pending. */
  readonly pending?: number;
  /** The scheduler's reasons for this runner's pending jobs, as given, with how many jobs give each. */
  readonly pendingReasons?: Readonly<Record<string, number>>;
}

/** A job that left the scheduler's queue on its own and what became of its container (the `lost` event). */
export interface RunnerLostJob {
  readonly uuid: string;
  /** The scheduler's job id, if it was known. */
  readonly jobId: string | undefined;
  /** What releasing the container did (`none`: it had finished by itself, or is no longer ours). */
  readonly action: ReleaseAction;
  /** Why, as logged on the container. */
  readonly reason: string;
}

/** One scheduler command run by a runner, for metrics. */
export interface RunnerCommandRecord {
  /** The command's name, e.g. `sbatch`. */
  readonly command: string;
  readonly durationMs: number;
  readonly result: 'ok' | 'error';
  /** For `error`: what the failure means (`transient`, `backpressure`, `fatal`, `configuration`). */
  readonly errorClass?: string;
}

/**
 * The events a runner may emit, one typed set for every runner (names are
 * stable: the CLI and the management server consume them through the
 * {@link Runner} interface).
 */
export interface RunnerEvents {
  /** Something failed that the runner retries or worked around, or that needs an administrator. */
  warning: [message: string];
  /** A scheduler command ended. */
  command: [record: RunnerCommandRecord];
  /** A submission ended: `ok`, `error`, or `duplicate` (found in the queue, not repeated). */
  submitted: [uuid: string, result: 'ok' | 'error' | 'duplicate', jobId?: string];
  /** A job left the queue on its own and its container was released. */
  vanished: [uuid: string, resolution: ReleaseAction];
  /** A job left the queue for good; `kind` from the scheduler's accounting, `UNKNOWN` without it. */
  finished: [uuid: string, kind: string];
  /** A job left the queue on its own and was declared lost after the grace. */
  lost: [info: RunnerLostJob];
  /** Jobs named like containers of this cluster were in the queue at startup; the runner follows them. */
  orphans: [uuids: string[]];
}

/** Subscribing to a runner's {@link RunnerEvents}. */
export interface RunnerEventSource {
  /** Calls `listener` on every `event` from now on. */
  on<K extends keyof RunnerEvents>(event: K, listener: (...args: RunnerEvents[K]) => void): unknown;
  /** Stops calling `listener` on `event`. */
  off<K extends keyof RunnerEvents>(event: K, listener: (...args: RunnerEvents[K]) => void): unknown;
}

/**
 * A runner the Dispatcher owns: `new Dispatcher({ runner })`. The Dispatcher
 * calls `attach` once its token is identified and before the first poll, hands
 * containers to `runContainer`, and calls `close` exactly once on every stop
 * path, after its runners have settled: it is the runner's only closer.
 */
export interface Runner {
  /** Counters for status lines, metrics and health; optional. */
  readonly status?: RunnerStatus;
  /** Where to subscribe to the {@link RunnerEvents}; optional (a runner without them). */
  readonly events?: RunnerEventSource;
  /** Runs one container; see {@link RunContainer}. */
  runContainer: RunContainer;
  /**
   * Called once by `Dispatcher.run()` after the token is identified and before
   * the first poll (e.g. to adopt batch jobs left from an earlier run). A
   * rejection makes `run()` reject: a runner that cannot start must not lock.
   */
  attach?(dispatcher: Dispatcher, signal: AbortSignal): Promise<void>;
  /** Frees everything the runner holds. Idempotent (returns the same promise). */
  close(): Promise<void>;
  /**
   * How many more containers the runner can take now, or undefined for no
   * limit of its own; the Dispatcher locks no more than that. `candidates`
   * are the Queued containers the Dispatcher would lock next, in the order
   * it would lock them (highest priority first), so a runner whose
   * containers differ in size can say how many of *these* fit (the local
   * runner does); a runner with a plain count may ignore them.
   */
  capacity?(candidates: readonly Readonly<Container>[]): number | undefined;
  /** A short sentence on where a held container stands, for the management API. */
  schedulingStatus?(uuid: string): string | undefined;
  /**
   * The instance types a container (held or queued) would run on, best
   * first, for the management API's `instance_types` and `instance_type`;
   * undefined or empty when the runner does not choose instance types.
   */
  instanceTypes?(container: Readonly<Container>): readonly InstanceTypeView[] | undefined;
  /**
   * Stops the work for a held container at once (e.g. signals crunch-run
   * without a grace period, or cancels its batch job), because
   * `Dispatcher.kill` was asked to; `reason` says why, for the runner's
   * log. The Dispatcher releases the container itself.
   */
  kill?(uuid: string, reason: string): void;
}

/** How a container is released: see {@link Dispatcher.release}. */
export interface ReleaseOptions {
  /**
   * Why, in one line for the container's owner (written to `runtime_status.error`
   * when the container is cancelled, and to the `logs` record).
   */
  reason: string;
  /** The underlying error, if any: its redacted description becomes `runtime_status.errorDetail`. */
  error?: unknown;
  /** Cancel the container even if it is still Locked (e.g. it can never run here). Default false: Locked is unlocked. */
  cancel?: boolean;
  /** Extra lines for the `logs` record (e.g. the tail of crunch-run's stderr); redacted. */
  detail?: string;
}

/** What a release did. */
export type ReleaseAction = 'unlocked' | 'cancelled' | 'none';

/**
 * A failure that is not the container's fault: our configuration or this
 * host's environment (a bad argument template, a missing command, a
 * permission). A runner rejects with it (or passes it to `release`) and the
 * Dispatcher stops locking new containers and says so, instead of cycling
 * containers through lock/unlock until the API cancels them.
 */
export class RunnerConfigError extends Error {
  /** `configuration` (ours to fix) or `environment` (this host's). */
  readonly kind: 'configuration' | 'environment';
  constructor(message: string, kind: 'configuration' | 'environment' = 'configuration', options?: ErrorOptions) {
    super(message, options);
    this.name = 'RunnerConfigError';
    this.kind = kind;
  }
}
