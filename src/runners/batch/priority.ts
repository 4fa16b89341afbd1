/**
 * Keeping a scheduler's queue order in line with Arvados' priorities by
 * adjusting each pending job's nice value (Slurm's `Nice`, or any value that
 * lowers a job as it grows), changing as few jobs as possible each round.
 *
 * @module
 */
import type { Container } from '../../types.js';
import type { PriorityChange, QueueJob } from './adapter.js';

/** The spread used when the configured one is below 1. */
export const DEFAULT_PRIORITY_SPREAD = 10;

/** A job's current priority and nice value, as the queue query reports them. */
export interface NiceJob {
  /** The scheduler's priority, which already includes the effect of `nice`. */
  readonly priority: number;
  readonly nice: number;
}

/**
 * Computes nice values that put `jobs` in the given order in the scheduler's queue.
 *
 * `jobs` must be sorted by desired order, most wanted first. The result has
 * one nice value per job. The first job always gets 0, i.e. the highest
 * priority available. A job that is already behind its predecessor, and not
 * too far behind (less than 10 × `spread`), keeps its nice value, so a stable
 * queue causes no renicing. Otherwise the job is placed `spread` below its
 * predecessor, or as high as a nice value of 0 allows if that is lower.
 *
 * A larger `spread` leaves room to insert jobs later without renicing their
 * neighbours; a smaller one keeps nice values small, which matters on sites
 * whose other users also use nice.
 *
 * @param spread - Gap to leave between adjacent jobs; below 1 means
 *   {@link DEFAULT_PRIORITY_SPREAD}.
 * @example
 * wantNice([{ priority: 4000, nice: 0 }, { priority: 5000, nice: 0 }], 1) // => [0, 1001]
 */
export function wantNice(jobs: readonly NiceJob[], spread: number): number[] {
  if (!(spread >= 1)) spread = DEFAULT_PRIORITY_SPREAD;
  const renice: number[] = new Array<number>(jobs.length).fill(0);
  // The highest priority the current job may have without overtaking the
  // previous one.
  let target = 0;
  jobs.forEach((job, i) => {
    if (i === 0) {
      target = job.priority + job.nice;
    } else {
      const space = target - job.priority;
      if (space >= 0 && space < (spread - 1) * 10) {
        // Already in order and not wastefully far behind: leave it alone.
        renice[i] = job.nice;
        target = job.priority;
      } else {
        target -= spread - 1;
        const possible = job.priority + job.nice;
        if (target > possible) {
          // Even nice 0 cannot lift it to the target; that is the best we can do.
          target = possible;
        } else {
          renice[i] = possible - target;
        }
      }
    }
    target--;
  });
  return renice;
}

/** A pending job with the priority Arvados wants for it (see {@link wantPriority}). */
export interface ReniceCandidate {
  readonly job: QueueJob;
  /** 0n means unknown (no usable record yet): such jobs are left alone. */
  readonly want: bigint;
}

/**
 * Sorts `candidates` into the order Arvados wants: highest wanted priority
 * first, ties broken by name, descending, so the order does not flap between
 * rounds. Jobs with an unknown (0n) priority are left out.
 */
export function wantedOrder(candidates: readonly ReniceCandidate[]): QueueJob[] {
  const known = candidates.filter((c) => c.want !== 0n);
  known.sort((a, b) => {
    if (a.want !== b.want) return a.want > b.want ? -1 : 1;
    return a.job.name > b.job.name ? -1 : a.job.name < b.job.name ? 1 : 0;
  });
  return known.map((c) => c.job);
}

/**
 * The default priority plan of the core: {@link wantNice} over jobs in the
 * wanted order, returning only the jobs whose nice value changes.
 */
export function planNice(jobsInWantedOrder: readonly QueueJob[], spread: number): PriorityChange[] {
  const nice = wantNice(jobsInWantedOrder, spread);
  const changes: PriorityChange[] = [];
  jobsInWantedOrder.forEach((job, i) => {
    if (nice[i] !== job.nice) changes.push({ job, value: nice[i] });
  });
  return changes;
}

const ISO_TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})$/;

/**
 * Nanoseconds since the Unix epoch of an Arvados timestamp such as
 * `2016-01-11T11:11:11.111111111Z`, exactly (the API sends up to nanosecond
 * digits, more than a `Date` keeps). Returns undefined if it cannot be parsed.
 */
export function timestampNanos(timestamp: string | null | undefined): bigint | undefined {
  const m = ISO_TIME.exec(timestamp ?? '');
  if (!m) return undefined;
  // Whole seconds through Date (in ms), the fraction digit by digit.
  const wholeMs = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(wholeMs)) return undefined;
  const fraction = (m[2] ?? '').slice(0, 9).padEnd(9, '0');
  return BigInt(wholeMs) * 1_000_000n + BigInt(fraction);
}

/**
 * The priority to order a container by in the scheduler, from its Arvados
 * record; 0n (leave the job alone) when the record has no usable priority,
 * since a malformed update must never cost the process.
 *
 * Priorities up to 1000 are user-assigned, and many containers share each
 * value, so they are spread out by age: `p × 2^50 − (created_at in ns >> 14)`,
 * which runs older containers first among equals. Larger priorities already
 * encode an order (the API derives them from the top-level request's priority
 * and age) and are used as they are.
 *
 * The result is a `bigint` because values reach 2^60: a `number` there has a
 * resolution of 256 units, i.e. about 4 ms of creation time (one unit is
 * 2^14 ns ≈ 16 µs), enough to tie containers created in the same burst. A
 * priority above 2^53 has already been rounded by JSON parsing (see
 * {@link Container.priority}); that rounding is kept, not made worse.
 * A record without a parsable `created_at` counts as created at the epoch,
 * i.e. first among its equals.
 */
export function wantPriority(container: Pick<Container, 'priority' | 'created_at'>): bigint {
  const priority: unknown = container.priority;
  if (typeof priority !== 'number' || !Number.isFinite(priority) || priority <= 0) return 0n;
  const p = BigInt(Math.trunc(priority));
  if (p > 1000n) return p;
  const created = timestampNanos(container.created_at) ?? 0n;
  return (p << 50n) - (created >> 14n);
}
