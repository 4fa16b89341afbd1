/**
 * The Runner contract: what a Dispatcher needs from whatever runs its
 * containers (a local process pool, a batch system, a test double).
 *
 * @module
 */
import type { Container, ContainerState } from '../types.js';
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
  /**
   * Of those, waiting for resources on this host (the local runner). Without
   * it, every container not running counts as waiting (batch runners: in
   * the scheduler's queue or being submitted).
   */
  readonly waiting?: number;
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

/** The resources a container needs on this host (the `waiting` event). */
export interface RunnerResources {
  vcpus: number;
  /** Bytes. */
  ram: number;
  /** GPUs, if any, of one stack (`cuda`, `rocm`). */
  gpus?: { count: number; stack: string };
}

/** A container that does not fit into what is free now and waits for resources (the `waiting` event). */
export interface RunnerWaiting {
  uuid: string;
  /** What it needs. */
  need: RunnerResources;
  /** A one-line log message for operators, saying what is short. */
  message: string;
}

/** A container's crunch-run process started on this host (the `started` event). */
export interface RunnerStarted {
  uuid: string;
  pid: number;
  /** The vCPUs reserved for it. */
  vcpus: number;
  /** The RAM reserved for it, bytes. */
  ram: number;
  /** The GPU ids reserved for it. */
  gpuIds: readonly string[];
}

/** One line a container's crunch-run wrote, already redacted (the `output` event). */
export interface RunnerOutput {
  uuid: string;
  pid: number;
  stream: 'stdout' | 'stderr';
  line: string;
}

/** A signal sent to a container's crunch-run to stop it (the `signalled` event). */
export interface RunnerSignalled {
  uuid: string;
  pid: number;
  signal: NodeJS.Signals;
  /** Why it is being stopped. */
  reason: string;
}

/** A crunch-run started before a restart still runs for the container and is followed instead of starting another (the `adopted` event). */
export interface RunnerAdopted {
  uuid: string;
  pid: number;
}

/** A container's crunch-run exited (the `exited` event). */
export interface RunnerExited {
  uuid: string;
  pid: number;
  /** Its exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The final state a container reached while the runner had it, as the runner saw it (the `outcome` event). */
export interface RunnerOutcome {
  uuid: string;
  state: ContainerState;
  /** The container's `exit_code`, if it has one. */
  exitCode: number | null;
  /** How its crunch-run process ended, when one ran for it. */
  process?: { code: number | null; signal: NodeJS.Signals | null };
}

/** Something a runner decided about one container (the `cancelled`, `rejected`, `unlocked` and `skipped` events). */
export interface RunnerNotice {
  uuid: string;
  /** Short reason; for cancellations, the text put into `runtime_status.error`. */
  reason: string;
  /** A one-line log message for operators. */
  message: string;
}

/**
 * The events a runner may emit, one typed set for every runner (names are
 * stable: the CLI and the management server consume them through the
 * {@link Runner} interface). Each event says which runners emit it: batch
 * runners (Slurm, LSF, Grid Engine, PBS) report their scheduler's side, the
 * local runner its crunch-run processes; `finished` and `warning` may come
 * from any runner. A consumer subscribes to all it shows and gets those its
 * runner has.
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
  /**
   * A container's work ended for good. Batch runners: its job left the
   * queue, `kind` from the scheduler's accounting (`UNKNOWN` without it).
   * The local runner: the container reached a final state, `kind` is that
   * state (`Complete`, `Cancelled`), with the details in `outcome`.
   */
  finished: [uuid: string, kind: string];
  /** A job left the queue on its own and was declared lost after the grace. */
  lost: [info: RunnerLostJob];
  /** Jobs named like containers of this cluster were in the queue at startup; the runner follows them. */
  orphans: [uuids: string[]];
  /** Local runner: the container does not fit into what is free now and waits for resources. */
  waiting: [e: RunnerWaiting];
  /** Local runner: the container's crunch-run started. */
  started: [e: RunnerStarted];
  /** Local runner: a line the container's crunch-run wrote, already redacted. */
  output: [e: RunnerOutput];
  /** Local runner: a signal was sent to the container's crunch-run to stop it. */
  signalled: [e: RunnerSignalled];
  /** Local runner: a crunch-run started before a restart still runs for the container; it is followed instead of starting another. */
  adopted: [e: RunnerAdopted];
  /** Local runner: the container's crunch-run exited. */
  exited: [e: RunnerExited];
  /** Local runner: the container reached a final state while the runner had it (also reported as `finished` with the state). */
  outcome: [e: RunnerOutcome];
  /** Local runner: the runner cancelled the container. */
  cancelled: [e: RunnerNotice];
  /** Local runner: the container can never fit on this node; the runner cancelled it. */
  rejected: [e: RunnerNotice];
  /** Local runner: the runner released the container with an unlock (crunch-run exited before starting it). */
  unlocked: [e: RunnerNotice];
  /** Local runner: the runner returned without starting crunch-run (priority 0, stream ended, shutdown); the dispatcher unlocks it. */
  skipped: [e: RunnerNotice];
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
