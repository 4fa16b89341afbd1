/**
 * The Dispatcher's options, status, management snapshot and events: the
 * types a user of the Dispatcher reads, each documented where it is defined.
 *
 * @module
 */
import type { ArvadosClient } from '../client/client.js';
import type { ContainerApi } from './api.js';
import type { ApiClientAuthorization, Container, ContainerState } from '../types.js';
import type { RunContainer, Runner, RunnerConfigError } from './runner.js';
import type { Clock } from '../util/sleep.js';
import type { SecondSignal } from './signals.js';
import type { StreamEndReason } from './updates.js';
import type { IncrementalOptions } from './watermark.js';

export type { IncrementalOptions } from './watermark.js';

/** Settings of the event stream listener (see {@link DispatcherOptions.events}). */
export interface DispatcherEventOptions {
  /** The event stream's URL. Default: the discovery document's `websocketUrl`. */
  url?: string;
  /** Extra trusted CA certificates (PEM) for the event stream, like the client's `ca` (e.g. a test server's). */
  ca?: string | Buffer | Array<string | Buffer>;
}

/** Options of {@link Dispatcher}: give either `runContainer` or `runner`. */
export interface DispatcherOptions {
  /** Called once per container this dispatcher takes on (the design card's plain callback). */
  runContainer?: RunContainer;
  /**
   * A runner the Dispatcher owns: it is attached after the token is
   * identified, asked for its capacity before each round of locks, and
   * closed once on every stop path after its containers have settled.
   */
  runner?: Runner;
  /** Default: `ArvadosClient.fromEnv()` (unless `api` is given). */
  client?: ArvadosClient;
  /**
   * The calls the dispatcher makes, if not `client`'s: e.g. a
   * `MemoryContainerApi` from `arvados-dispatch/testing`, to test
   * scheduling without HTTP (no event stream then). Default: `client`.
   */
  api?: ContainerApi;
  /** Milliseconds between queue polls. Default 10 000. */
  pollInterval?: number;
  /**
   * Page size of container queries. Default 1000, Arvados'
   * `API.MaxItemsPerResponse`; a server that caps pages lower is paged on.
   */
  batchSize?: number;
  /** Milliseconds between attempts to start the same container. Default 0 (no limit). */
  minRetryPeriod?: number;
  /**
   * Lock requests in flight at once. Default 8, the concurrency the Go SDK's
   * client starts with against one API server. API overload answers lower it
   * for a while (see `status.lockConcurrency`).
   */
  lockConcurrency?: number;
  /**
   * Containers in flight (held by a runner) at most. Beyond it Queued
   * containers are not locked at all, so no dispatch attempt is charged and
   * another dispatcher may take them; when room frees up, the highest
   * priority goes first. Containers already locked by this token (after a
   * restart) are adopted regardless. Default: no cap beyond the runner's
   * own `capacity()`.
   */
  maxJobs?: number;
  /**
   * The share of `maxJobs` that workflow runners (containers with
   * `scheduling_parameters.supervisor`) may hold at most, like Arvados'
   * `Containers.CloudVMs.SupervisorFraction`: `floor(fraction × maxJobs)`,
   * at least 1. Default: no cap (also when `maxJobs` is not set).
   */
  supervisorFraction?: number;
  /**
   * Backoff after a failure that is plausibly the container's own (its
   * runner rejected, or released it with an error or detail): the container
   * is not locked again for `initial` ms, doubling per failure up to `max`.
   * Default `{ initial: max(pollInterval, minRetryPeriod), max: 600 000 }`.
   */
  failureBackoff?: { initial?: number; max?: number };
  /**
   * Poll as soon as a container changes, woken by the API's event stream
   * (the websocket at the discovery document's `websocketUrl`), instead of
   * only every `pollInterval`. Events only wake the poll; when the stream is
   * unavailable, polling goes on as without it. Default true; `false` turns
   * it off.
   */
  events?: boolean | DispatcherEventOptions;
  /**
   * Incremental polling: between full sweeps, a poll asks only for the
   * containers modified since the last one (plus the Queued ones, and those
   * this token holds at priority 0), so its cost follows what changed, not
   * what is held. A container may be declared vanished only after a sweep;
   * one that changed in a way no poll sees (deleted; a priority recomputed
   * without touching `modified_at`) is seen at the next sweep. With events
   * on, an event pulls only the containers it names. Default true; `false`
   * makes every poll a sweep.
   */
  incremental?: boolean | IncrementalOptions;
  /** Stop gracefully on SIGINT, SIGTERM and SIGQUIT. Default true. */
  handleSignals?: boolean;
  /** What a second signal does (see {@link SecondSignal}). Default `stop-waiting`. */
  secondSignal?: SecondSignal;
  /**
   * How long `run()` waits for runners (and then the runner's `close()`) to
   * settle once stopping, in ms, before it resolves anyway. Default 60 000.
   */
  shutdownTimeout?: number;
  /**
   * Where every timer and timestamp of the dispatcher comes from (polls,
   * back-off, `minRetryPeriod`, the shutdown and release timeouts, the
   * management API's `first_seen_at`). Default: the real clock. Tests give
   * a `TestClock` from `arvados-dispatch/testing` to drive them.
   */
  clock?: Clock;
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
  /** Whether every query of the last cycle succeeded and returned only well-formed records. */
  healthy: boolean;
  /** Queued containers were left unlocked in the last cycle because of `maxJobs` or the runner's capacity. */
  atQuota: boolean;
  /** Lock requests allowed in flight now (lowered while the API is overloaded). */
  lockConcurrency: number;
  /** Epoch ms until which locking is paused because the API answered 503/429; absent when not paused. */
  pausedUntil?: number;
  /** Why locking stopped for good (a runner reported a configuration or environment error); absent when not. */
  paused?: string;
  /** Why locking and adopting are held for now (see `Dispatcher.hold`); absent when not. */
  held?: string;
}

/**
 * An instance type a container can run on, in the shape of Arvados'
 * `InstanceTypes` config entries (as the cloud dispatcher's management API
 * shows them): `Name` and the sizes, plus whatever else the source knows.
 */
export interface InstanceTypeView {
  Name: string;
  ProviderType?: string;
  VCPUs?: number;
  /** Bytes. */
  RAM?: number;
  /** Bytes. */
  Scratch?: number;
  Price?: number;
  Preemptible?: boolean;
  [key: string]: unknown;
}

/** One container the dispatcher holds or is waiting to lock, for the management API. */
export interface DispatchEntry {
  /** The newest record the dispatcher has of it. */
  container: Readonly<Container>;
  /** A short sentence on where it stands, e.g. `running (pid 123)`, `waiting: at max-jobs (4)`. */
  scheduling_status: string;
  /** When this dispatcher first saw it (ISO 8601), for `first_seen_at`. */
  first_seen_at?: string;
  /**
   * The instance types it may run on, best first, from the runner's
   * `instanceTypes()` (empty when the runner does not choose types).
   */
  instance_types?: readonly InstanceTypeView[];
}

/** Events a Dispatcher emits (for progress displays and metrics). */
export interface DispatcherEvents {
  identified: [auth: ApiClientAuthorization];
  cycle: [status: DispatcherStatus];
  /** Locked by this dispatcher and handed to a runner. */
  locked: [container: Readonly<Container>];
  /** Already locked by this token (e.g. after a restart) and handed to a runner without a lock. */
  adopted: [container: Readonly<Container>];
  /** A runner settled; `error` is set if it rejected. */
  settled: [uuid: string, error: unknown];
  /** {@link Dispatcher.release} unlocked or cancelled a container; `state` is the state it had. */
  released: [uuid: string, action: 'unlocked' | 'cancelled', state: ContainerState];
  /**
   * A container held here reached a final state (Complete or Cancelled):
   * once per container, whichever the dispatcher learnt it from first (its
   * updates stream, or the fresh record read by a release or a cleanup).
   */
  finished: [uuid: string, state: 'Complete' | 'Cancelled'];
  /**
   * `Dispatcher.kill` was called for a held container (the reason redacted);
   * the `released` event that follows says what its release did.
   */
  kill: [uuid: string, reason: string];
  /** A runner's updates stream ended; `container` is the record that ended it, if one did. */
  'stream-ended': [uuid: string, reason: StreamEndReason, container: Readonly<Container> | undefined];
  /** Something failed that the dispatcher will retry or has worked around. */
  warning: [message: string];
  /**
   * Locking stopped for good because a runner reported a
   * {@link RunnerConfigError}: containers already held go on, no new one is
   * locked until the process is restarted with the problem fixed.
   */
  paused: [reason: string, error: RunnerConfigError];
  /** The API answered 503/429: lock concurrency lowered, locking paused until `until` (epoch ms). */
  'api-overloaded': [until: number, lockConcurrency: number];
  /**
   * A poll cycle ended with nothing to do (see `Dispatcher.idle()`).
   */
  idle: [];
  /** A stop signal arrived; `count` is 1 for the first, 2 for the second, ... */
  signal: [signal: NodeJS.Signals, count: number];
  stopping: [reason: string];
}
