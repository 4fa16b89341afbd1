/**
 * Grid Engine's answers to qsub, qdel and qalter, and what a failure means.
 * The texts are those of Son of Grid Engine 8.1.9 (Debian's packages).
 *
 * @module
 */
import type { ErrorClass, RunResult } from '../adapter.js';
import { classifyByComplaint } from '../exec.js';

/** The job id in `qsub -terse` output (`9`, or `9.1-3:1` for an array job). */
export function parseQsubJobId(stdout: string): string | undefined {
  const first = stdout.trim().split('\n')[0] ?? '';
  return /^(\d+)(?:\.\S+)?$/.exec(first.trim())?.[1] ?? /Your job (\d+) /.exec(stdout)?.[1];
}

// qdel's answer per job: running `root has registered the job 4 for
// deletion`, pending `root has deleted job 6`, unknown or already gone
// `denied: job "99999" does not exist` (exit status 1 for the last).
const QDEL_DONE = /has registered the job \d+ for deletion|has deleted job \d+|is already in deletion/;
const QDEL_GONE = /job "?\d+"? does not exist/;

/** A failed qdel only because (some of) its jobs are gone already. */
export function qdelOnlyGone(result: RunResult): boolean {
  const lines = `${result.stdout}\n${result.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length > 0 && lines.every((l) => QDEL_DONE.test(l) || QDEL_GONE.test(l)) && lines.some((l) => QDEL_GONE.test(l));
}

/** qalter's refusal to raise a priority for a user who is not an operator or manager. */
export const RAISE_REFUSED = /must be (?:an? )?(?:operator|manager) to increase job priority/i;

const CONFIGURATION: readonly RegExp[] = [
  // This host may not submit or administer, or our user is not allowed.
  /is no submit host|is no admin(?:istrative)? host/i,
  /not allowed to submit|user .* is not (?:known|allowed)|your user id \d+ is lower than minimum/i,
  /permission denied/i,
  // The environment does not point at a cell (SGE_ROOT unset or wrong).
  /SGE_ROOT|can't read act_qmaster|cell directory/i,
];

const BACKPRESSURE: readonly RegExp[] = [
  // max_u_jobs / max_jobs in the global configuration.
  /Only \d+ jobs are allowed per (?:user|cluster)/i,
  /too many jobs/i,
];

const TRANSIENT: readonly RegExp[] = [
  /unable to contact qmaster|qmaster is not alive|can't (?:connect|contact)/i,
  /commlib error/i,
  /Connection (?:refused|reset|timed out)|timed out/i,
  /failed receiving gdi request|unable to send message/i,
  /try (?:again )?later|temporarily/i,
];

/**
 * What a failed Grid Engine command means. An error running it: a timeout is
 * `transient`, a missing or non-executable command `configuration`. A
 * non-zero exit is read from its output: host and user refusals are
 * `configuration`, job-count limits `backpressure`, an unreachable qmaster
 * `transient`, anything else `fatal` for a submission (a queue, parallel
 * environment or resource that does not exist) and for a refused priority
 * change, and `transient` for the other commands.
 */
export function classifySge(outcome: RunResult | Error, op: string): ErrorClass {
  const fatal = op === 'submit' || op === 'renice';
  if (op === 'renice' && !(outcome instanceof Error) && outcome.code !== null && RAISE_REFUSED.test(`${outcome.stderr}\n${outcome.stdout}`)) return 'fatal';
  return classifyByComplaint(outcome, { configuration: CONFIGURATION, backpressure: BACKPRESSURE, transient: TRANSIENT }, fatal ? 'fatal' : 'transient');
}
