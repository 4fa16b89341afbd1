/**
 * What OpenPBS 23.06's qsub, qdel and qalter answer, and what a failure
 * means.
 *
 * @module
 */
import type { CommandOp, ErrorClass, RunResult } from '../adapter.js';
import { classifyByComplaint } from '../exec.js';

/** The job id qsub prints: `123.server` (`123[].server` for an array job). */
export function parseQsubJobId(stdout: string): string | undefined {
  const first = stdout.trim().split('\n')[0]?.trim() ?? '';
  return /^\d+(?:\[\d*\])?\.[\w.-]+$/.test(first) ? first : undefined;
}

// qdel of a job that is gone: `qdel: Unknown Job Id 123.server`, or with job
// history on, `qdel: Job has finished 123.server`.
const QDEL_GONE = /Unknown Job Id|Job has finished/i;

/** A failed qdel only because (some of) its jobs are gone already. */
export function qdelOnlyGone(result: RunResult): boolean {
  const lines = `${result.stdout}\n${result.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length > 0 && lines.every((l) => QDEL_GONE.test(l));
}

const CONFIGURATION: readonly RegExp[] = [
  // Our user or this host may not submit, or the client is not set up.
  /Unauthorized Request|Bad UID for job execution|permission denied|not allowed/i,
  /PBS_SERVER|pbs\.conf|No server to connect/i,
];

const BACKPRESSURE: readonly RegExp[] = [
  // max_queued / max_run limits per user or queue.
  /would exceed .*limit|Maximum number of jobs already in queue|exceed(?:s|ed)? .*max_queued/i,
];

const TRANSIENT: readonly RegExp[] = [
  /cannot connect to server|Connection (?:refused|reset|timed out)|timed out/i,
  /Server is busy|try again|temporarily|Communication failure|End of File/i,
];

/**
 * What a failed PBS command means: user and host refusals are
 * `configuration`, queue limits `backpressure`, an unreachable server
 * `transient`, anything else `fatal` for a submission (an unknown queue or
 * resource, a request beyond the queue's limits) and `transient` for the
 * others. Pure: it decides, it changes nothing.
 */
export function classifyPbs(outcome: RunResult | Error, op: CommandOp): ErrorClass {
  return classifyByComplaint(outcome, { configuration: CONFIGURATION, backpressure: BACKPRESSURE, transient: TRANSIENT }, op === 'submit' ? 'fatal' : 'transient');
}
