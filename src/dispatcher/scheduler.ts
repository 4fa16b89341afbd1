/**
 * The scheduler: which Queued containers to lock now, in which order, and
 * why each of the others waits. It only decides: it reads no clock, makes
 * no API call and changes nothing, so every rule can be tested with plain
 * values (test/dispatcher/scheduler.test.ts). The Dispatcher asks it once
 * per poll and then locks what it returns, in that order.
 *
 * @module
 */
import type { Container } from '../types.js';
import { isSupervisor } from './supervisors.js';

/** What one poll found to schedule. */
export interface Snapshot {
  /** Lock candidates: Queued, priority > 0, not held here; in any order. */
  readonly records: ReadonlyArray<Readonly<Container>>;
  /** Whether every query of the poll succeeded (nothing may be missing). */
  readonly complete: boolean;
}

/** What this dispatcher holds and the state of its rules at the moment of planning. */
export interface Holdings {
  /** Runners in flight (`runContainer` calls not yet settled). */
  readonly running: number;
  /** Workflow runners among the containers held. */
  readonly supervisors: number;
  /** `maxJobs`: containers in flight at most (Infinity: no cap). */
  readonly maxJobs: number;
  /** The supervisor cap (see supervisors.ts; Infinity: none). */
  readonly maxSupervisors: number;
  /** Why locking stopped for good (a runner's configuration error), if it did. */
  readonly paused?: string;
  /** Why locking is held for now (e.g. the cluster lock is not ours), if it is. */
  readonly held?: string;
  /** Epoch ms until which the API asked us to back off (503/429), if it did. */
  readonly apiPausedUntil?: number;
  /** Ms until a container may be tried again after its failures; 0 (or undefined) if now. */
  retryIn(uuid: string, now: number): number | undefined;
  /** Whether `minRetryPeriod` allows an attempt to start the container now. */
  mayAttempt(uuid: string, now: number): boolean;
  /** How many of `eligible` (in lock order) the runner has room for now; undefined if it does not say. */
  capacity?(eligible: ReadonlyArray<Readonly<Container>>): number | undefined;
}

/** A container left Queued this time, and why. */
export interface Waiting {
  readonly container: Readonly<Container>;
  /** A short reason, e.g. `at max-jobs (4)`; shown as `waiting: <why>`. */
  readonly why: string;
}

/** What to do this poll. */
export interface Plan {
  /** Containers to lock, in this order (highest priority first). */
  readonly lock: ReadonlyArray<Readonly<Container>>;
  /** The others, in priority order, with why each waits. */
  readonly waiting: readonly Waiting[];
  /** Some were left because of `maxJobs` or the runner's capacity. */
  readonly atQuota: boolean;
  /**
   * How many of `waiting` wait for a configuration error to be fixed:
   * nothing changes for them until a restart, so they do not keep the
   * dispatcher from being idle.
   */
  readonly stopped: number;
}

/**
 * Lock order: priority first; equal priorities oldest first (as the API's own
 * priority formula orders them), then by uuid so the order is stable.
 */
export function byPriority(a: Readonly<Container>, b: Readonly<Container>): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  const ca = a.created_at ?? '';
  const cb = b.created_at ?? '';
  if (ca !== cb) return ca < cb ? -1 : 1;
  return a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0;
}

/**
 * Decides a poll's locks. First what holds a container back whatever the
 * room (a configuration-error pause, a hold, API back-pressure, its own
 * failure back-off): nothing is charged for these. Then, highest priority
 * first, the room left by `maxJobs` and the runner's capacity; a workflow
 * runner beyond the supervisor cap is skipped (not a stop: the containers
 * behind it may be what running supervisors wait for), and one tried too
 * recently (`minRetryPeriod`) waits without taking room.
 */
export function plan(snapshot: Snapshot, holdings: Holdings, now: number): Plan {
  const candidates = [...snapshot.records].sort(byPriority);
  const waiting: Waiting[] = [];
  const wait = (container: Readonly<Container>, why: string): void => void waiting.push({ container, why });
  const eligible: Array<Readonly<Container>> = [];
  let stopped = 0;
  const apiPaused = holdings.apiPausedUntil !== undefined && holdings.apiPausedUntil > now;
  for (const c of candidates) {
    const retryIn = holdings.retryIn(c.uuid, now) ?? 0;
    if (holdings.paused !== undefined) {
      wait(c, `locking stopped: ${holdings.paused}`);
      stopped++;
    } else if (holdings.held !== undefined) wait(c, holdings.held);
    else if (apiPaused) wait(c, 'locking paused: the API is overloaded');
    else if (retryIn > 0) wait(c, `retrying in ${Math.ceil(retryIn / 1000)} s after a failure`);
    else eligible.push(c);
  }
  let room = holdings.maxJobs - holdings.running;
  let roomWhy = `at max-jobs (${holdings.maxJobs})`;
  const cap = eligible.length > 0 ? holdings.capacity?.(eligible) : undefined;
  if (cap !== undefined && cap < room) {
    room = Math.max(0, Math.floor(cap));
    roomWhy = 'the runner has no free capacity';
  }
  let atQuota = false;
  let supervisors = holdings.supervisors;
  const lock: Array<Readonly<Container>> = [];
  for (const c of eligible) {
    if (isSupervisor(c) && supervisors >= holdings.maxSupervisors) {
      wait(c, `at the supervisor cap (${holdings.maxSupervisors} of max-jobs ${holdings.maxJobs})`);
    } else if (lock.length >= room) {
      atQuota = true;
      wait(c, roomWhy);
    } else if (!holdings.mayAttempt(c.uuid, now)) wait(c, 'min-retry-period has not passed');
    else {
      lock.push(c);
      if (isSupervisor(c)) supervisors++;
    }
  }
  waiting.sort((a, b) => byPriority(a.container, b.container));
  return { lock, waiting, atQuota, stopped };
}
