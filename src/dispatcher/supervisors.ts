/**
 * The cap on workflow runners (`scheduling_parameters.supervisor`): with
 * nothing but supervisors holding every slot, none of the containers they
 * wait for can start, and the queue deadlocks. Arvados' cloud dispatcher
 * caps them at `Containers.CloudVMs.SupervisorFraction` of its capacity;
 * here the capacity is `maxJobs`.
 *
 * @module
 */
import type { Container } from '../types.js';

/** Whether `c` is a workflow runner. */
export function isSupervisor(c: Pick<Container, 'scheduling_parameters'>): boolean {
  return c.scheduling_parameters?.supervisor === true;
}

/**
 * The most supervisors to hold at once: `fraction × maxJobs` rounded down,
 * but at least 1 when the fraction is above 0 (so that a small `maxJobs`
 * does not starve workflows altogether). Infinity (no cap) when `fraction`
 * is 0 or undefined, or `maxJobs` is Infinity (no `--max-jobs`: there is no
 * count to take a fraction of).
 *
 * @throws RangeError for a fraction outside [0, 1].
 */
export function supervisorCap(fraction: number | undefined, maxJobs: number): number {
  if (fraction === undefined) return Infinity;
  if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`supervisorFraction must be between 0 and 1, got ${String(fraction)}`);
  if (fraction === 0 || !Number.isFinite(maxJobs)) return Infinity;
  return Math.max(1, Math.floor(fraction * maxJobs));
}
