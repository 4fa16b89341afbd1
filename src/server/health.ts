/**
 * Health as `GET /_health/ping` reports it: OK unless the API poll or the
 * scheduler's status poll has been failing for longer than a few of its own
 * intervals. One failed poll is normal (a restart of the API server, a slow
 * slurmctld) and retried; only a lasting failure is worth waking someone.
 *
 * @module
 */
import { realClock, type Clock } from '../util/sleep.js';

/** The pollers whose health is followed. */
export type HealthComponent = 'api' | 'scheduler';

/** What {@link HealthMonitor.check} answers. */
export type HealthState = { ok: true } | { ok: false; reason: string };

interface ComponentState {
  interval: () => number;
  /** Start of the current run of failures (or of monitoring, before the first success). */
  failingSince: number | undefined;
  everOk: boolean;
  reason: string;
}

/** Options of {@link HealthMonitor}. */
export interface HealthOptions {
  /** Failures are tolerated for this many intervals. Default 3. */
  intervals?: number;
  /** ...and at least this many ms. Default 30 000. */
  minGrace?: number;
  clock?: Clock;
}

const NAMES: Record<HealthComponent, string> = { api: 'the API poll', scheduler: "the scheduler's status poll" };

/**
 * Follows the successes and failures of the pollers. A component is
 * followed once {@link watch} is called for it, with its interval.
 */
export class HealthMonitor {
  readonly #components = new Map<HealthComponent, ComponentState>();
  readonly #intervals: number;
  readonly #minGrace: number;
  readonly #clock: Clock;

  constructor(opts: HealthOptions = {}) {
    this.#intervals = opts.intervals ?? 3;
    this.#minGrace = opts.minGrace ?? 30_000;
    this.#clock = opts.clock ?? realClock;
  }

  /**
   * Starts following `component`, which polls every `interval` ms (a
   * function for a poller whose interval adapts, read at each check).
   */
  watch(component: HealthComponent, interval: number | (() => number)): this {
    const read = typeof interval === 'function' ? interval : () => interval;
    this.#components.set(component, { interval: read, failingSince: this.#clock.now(), everOk: false, reason: 'no successful poll yet' });
    return this;
  }

  /** A successful poll of `component`. */
  ok(component: HealthComponent): void {
    const c = this.#components.get(component);
    if (!c) return;
    c.failingSince = undefined;
    c.everOk = true;
  }

  /** A failed poll of `component`, and why (already redacted, one line). */
  failed(component: HealthComponent, reason: string): void {
    const c = this.#components.get(component);
    if (!c) return;
    c.failingSince ??= this.#clock.now();
    c.reason = reason;
  }

  /** OK, or the first component failing for too long and why. */
  check(): HealthState {
    const now = this.#clock.now();
    for (const [name, c] of this.#components) {
      if (c.failingSince === undefined) continue;
      const grace = Math.max(this.#minGrace, this.#intervals * c.interval());
      const for_ = now - c.failingSince;
      if (for_ > grace) {
        const what = c.everOk ? `${NAMES[name]} has failed for ${Math.round(for_ / 1000)}s` : `${NAMES[name]} has not succeeded in ${Math.round(for_ / 1000)}s`;
        return { ok: false, reason: `${what}: ${c.reason}` };
      }
    }
    return { ok: true };
  }
}
