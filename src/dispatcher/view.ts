/**
 * The management view: what a Dispatcher shows of itself, as the Go cloud
 * dispatcher's management API does. The containers held (with the
 * runner's scheduling status) and those the last poll left waiting (with
 * why), each with when it was first seen and the instance types it may run
 * on; and the counters of `status`. It only reads what the other parts
 * keep, apart from the counters the poll cycle writes into it and the
 * first-seen times.
 *
 * @module
 */
import { logger } from '../log.js';
import type { Container } from '../types.js';
import { describeError } from '../util/errors.js';
import type { Clock } from '../util/sleep.js';
import type { DispatchEntry, DispatcherStatus, InstanceTypeView } from './options.js';
import type { ApiPressure } from './pressure.js';
import type { Runner } from './runner.js';
import type { Supervisor } from './supervisor.js';

const log = logger('dispatcher');

/** What the poll cycles counted, as `status` shows it; written by the cycle and the locker. */
export type CycleCounters = Pick<DispatcherStatus, 'queued' | 'cycles' | 'healthy' | 'atQuota'>;

/** Where the view reads what it shows. */
export interface ViewSources {
  readonly clock: Clock;
  /** The runner given as `runner`, if any (its scheduling status and instance types). */
  readonly runner: Pick<Runner, 'schedulingStatus' | 'instanceTypes'> | undefined;
  readonly supervisor: Pick<Supervisor, 'trackers' | 'runners'>;
  /** Lock concurrency and the overload pause. */
  pressure(): Pick<ApiPressure, 'concurrency' | 'pausedUntil'>;
  /** Why locking stopped for good, if it did. */
  paused(): string | undefined;
  /** Why locking and adopting are held, if they are. */
  held(): string | undefined;
}

/** The entries and counters of the management API and `status`. */
export class DispatchView {
  readonly #src: ViewSources;
  /** The counters of `status`, in the order `status` lists them first. */
  readonly counters: CycleCounters = { queued: 0, cycles: 0, healthy: true, atQuota: false };
  /** The Queued containers the last plan left waiting, with why. */
  #waiting: DispatchEntry[] = [];
  /** When each held or waiting container was first seen (epoch ms); pruned every cycle. */
  readonly #firstSeen = new Map<string, number>();

  constructor(sources: ViewSources) {
    this.#src = sources;
  }

  /** Notes when a container was first seen (the first time only). */
  markSeen(uuid: string): void {
    if (!this.#firstSeen.has(uuid)) this.#firstSeen.set(uuid, this.#src.clock.now());
  }

  /**
   * Takes in a cycle's plan: the containers that wait, and those about to
   * be locked. Both are seen now; a first-seen time of a container neither
   * planned nor held is forgotten.
   */
  planned(waiting: DispatchEntry[], locking: readonly string[]): void {
    this.#waiting = waiting;
    const seen = new Set([...waiting.map((e) => e.container.uuid), ...locking]);
    for (const uuid of seen) this.markSeen(uuid);
    const trackers = this.#src.supervisor.trackers;
    for (const uuid of this.#firstSeen.keys()) if (!seen.has(uuid) && !trackers.has(uuid)) this.#firstSeen.delete(uuid);
  }

  /** What `Dispatcher.entries()` returns (see there). */
  entries(): DispatchEntry[] {
    const runner = this.#src.runner;
    const trackers = this.#src.supervisor.trackers;
    const held: DispatchEntry[] = [];
    for (const t of trackers.values()) {
      if (t.phase === 'retired') continue;
      const status = t.phase === 'cleanup' ? 'releasing' : (runner?.schedulingStatus?.(t.uuid) ?? (t.record.state === 'Running' ? 'running' : 'locked'));
      held.push({ container: t.record, scheduling_status: status });
    }
    const all = [...held, ...this.#waiting.filter((e) => !trackers.has(e.container.uuid))];
    return all.map((e) => {
      const seen = this.#firstSeen.get(e.container.uuid);
      return {
        ...e,
        first_seen_at: new Date(seen ?? this.#src.clock.now()).toISOString(),
        instance_types: this.#instanceTypes(e.container),
      };
    });
  }

  /** What `Dispatcher.status` returns. */
  status(): DispatcherStatus {
    const src = this.#src;
    const pressure = src.pressure();
    const s: DispatcherStatus = {
      ...this.counters,
      tracked: src.supervisor.trackers.size,
      runners: src.supervisor.runners.size,
      lockConcurrency: pressure.concurrency,
    };
    const until = pressure.pausedUntil;
    if (until !== undefined) s.pausedUntil = until;
    const paused = src.paused();
    if (paused !== undefined) s.paused = paused;
    const held = src.held();
    if (held !== undefined) s.held = held;
    return s;
  }

  /** The runner's instance types for a container; a throwing runner counts as none. */
  #instanceTypes(c: Readonly<Container>): readonly InstanceTypeView[] {
    try {
      return this.#src.runner?.instanceTypes?.(c) ?? [];
    } catch (err) {
      log('instanceTypes(%s) threw: %s', c.uuid, describeError(err));
      return [];
    }
  }
}
