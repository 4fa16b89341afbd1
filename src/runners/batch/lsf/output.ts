/**
 * LSF's command output: `bjobs -json` records, bsub's and bkill's answers,
 * and what a failure means. The formats are those of IBM Spectrum LSF 10.1
 * (and of the stubs Arvados' own tests use).
 *
 * @module
 */
import { isContainerUuid } from '../../../uuid.js';
import type { ErrorClass, JobState, QueueJob, RunResult, TerminalReason } from '../adapter.js';
import { classifyByComplaint } from '../exec.js';

/** The bjobs fields the queue query asks for (`-o`), as Arvados' dispatcher asks plus the user priority. */
export const BJOBS_FIELDS = 'jobid stat job_name pend_reason job_priority';

/** The bjobs fields read once a job has left the queue (with `-a`). */
export const BJOBS_FINAL_FIELDS = 'jobid stat job_name exit_code exit_reason max_mem memlimit run_time runtimelimit';

/** bjobs printed something that is not its JSON report. */
export class BjobsParseError extends Error {
  override name = 'BjobsParseError';
}

type BjobsRecord = Readonly<Record<string, unknown>>;

/**
 * The records of a `bjobs … -json` report. Errors for single jobs come as
 * records with an `ERROR` field (e.g. `Job <12> is not found`) and are kept.
 *
 * @throws BjobsParseError when the report is not `{"COMMAND":"bjobs",…,"RECORDS":[…]}`.
 */
export function bjobsRecords(stdout: string): BjobsRecord[] {
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw new BjobsParseError(`bjobs -json printed something else: ${JSON.stringify(stdout.trim().slice(0, 120))}`);
  }
  const records = (doc as { RECORDS?: unknown } | null)?.RECORDS;
  if (typeof doc !== 'object' || doc === null || !Array.isArray(records)) {
    throw new BjobsParseError(`bjobs -json: no RECORDS list in ${JSON.stringify(stdout.trim().slice(0, 120))}`);
  }
  return records.filter((r): r is BjobsRecord => typeof r === 'object' && r !== null && !Array.isArray(r));
}

function field(record: BjobsRecord, name: string): string {
  const v = record[name];
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

/** LSF's state word, reduced to the core's three states. */
export function lsfJobState(stat: string): JobState {
  if (stat === 'PEND') return 'pending';
  if (stat === 'RUN') return 'running';
  // PSUSP (held while pending), USUSP/SSUSP (suspended), PROV, WAIT, UNKWN, ZOMBI.
  return 'other';
}

/** Finished states: the job no longer holds or waits for anything. */
const FINISHED = new Set(['DONE', 'EXIT']);

/**
 * Our jobs in a `bjobs -u USER -o "<BJOBS_FIELDS>" -json` report. Records
 * whose name is not a container UUID are skipped, and so are finished
 * (`DONE`/`EXIT`) ones, which some sites list for a while: a finished job is
 * not in the queue. Records without a job id or state go to `onBadLine`.
 */
export function parseBjobs(stdout: string, onBadLine?: (line: string) => void): QueueJob[] {
  const jobs: QueueJob[] = [];
  for (const record of bjobsRecords(stdout)) {
    const name = field(record, 'JOB_NAME');
    if (!isContainerUuid(name)) {
      if (field(record, 'ERROR') !== '') onBadLine?.(JSON.stringify(record));
      continue;
    }
    const jobId = field(record, 'JOBID');
    const stat = field(record, 'STAT');
    if (!/^\d+(?:\[\d+\])?$/.test(jobId) || !/^[A-Z]+$/.test(stat)) {
      onBadLine?.(JSON.stringify(record));
      continue;
    }
    if (FINISHED.has(stat)) continue;
    const priority = Number(field(record, 'JOB_PRIORITY'));
    jobs.push({
      jobId,
      name,
      state: lsfJobState(stat),
      rawState: stat,
      priority: Number.isFinite(priority) && field(record, 'JOB_PRIORITY') !== '' ? priority : 0,
      nice: 0,
      // bjobs ends each reason with ";" (several reasons are joined with it).
      pendingReason: field(record, 'PEND_REASON').replace(/[;\s]+$/, ''),
    });
  }
  return jobs;
}

/** The job id in bsub's `Job <123> is submitted to default queue <normal>.` */
export function parseBsubJobId(stdout: string): string | undefined {
  return /Job <(\d+)> is submitted/.exec(stdout)?.[1];
}

/**
 * A failed bkill only because its jobs are gone: every message is "Job has
 * already finished" or "No matching job found" (Arvados counts the first
 * as success; the second means the job left the queue before we asked).
 */
export function bkillOnlyGone(result: RunResult): boolean {
  const lines = `${result.stdout}\n${result.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  return lines.length > 0 && lines.every((l) => /already finished|No matching job found|is being terminated|is being signaled/i.test(l)) &&
    lines.some((l) => /already finished|No matching job found/i.test(l));
}

/** Pending reasons that no amount of waiting clears: nothing in the cluster fits the request. */
const NEVER_CLEARS: readonly RegExp[] = [
  // Arvados' LSF dispatcher cancels on this one (its #18298).
  /There are no suitable hosts for the job/i,
];

/** A pending reason that means the request can never be satisfied as submitted. */
export function lsfNeverClears(reason: string): boolean {
  return NEVER_CLEARS.some((re) => re.test(reason));
}

// bsub waits and retries by itself on these and prints them while it does;
// as the final answer they still mean "later".
const TRANSIENT: readonly RegExp[] = [
  /LSF is down/i,
  /(?:batch system|master|mbatchd) daemon not responding/i,
  /try (?:again )?later/i,
  /Failed in an LSF library call/i,
  /Connection (?:refused|reset|timed out)/i,
  /Communication time out/i,
  /temporarily/i,
];

// Limits on how many jobs we may have: retry once one of ours has left.
const BACKPRESSURE: readonly RegExp[] = [
  /Pending job threshold reached/i,
  /job (?:slot )?limit|MAX_PEND_JOBS|MAX_JOBS/i,
  /Too many (?:pending )?jobs/i,
];

// Our setup, not the container: sudo refusing, a user unknown to LSF.
const CONFIGURATION: readonly RegExp[] = [
  /sudo: .*(?:password is required|not allowed|unknown user|not in the sudoers|must have a tty)/i,
  /is not allowed to execute/i,
  /User permission denied/i,
  /No user with this name|Bad user ID/i,
];

/**
 * What a failed LSF command means. An error running it: a timeout or any
 * other runtime trouble is `transient`; a missing or non-executable command
 * is `configuration`. A non-zero exit is read from its output: sudo and
 * permission refusals are `configuration`, job limits `backpressure`, an
 * unreachable or busy mbatchd `transient`, anything else `fatal` for a
 * submission and `transient` for the other commands (which only touch jobs
 * that exist).
 */
export function classifyLsf(outcome: RunResult | Error, op: string): ErrorClass {
  return classifyByComplaint(outcome, { configuration: CONFIGURATION, backpressure: BACKPRESSURE, transient: TRANSIENT }, op === 'submit' ? 'fatal' : 'transient');
}

/**
 * How a job ended, from `bjobs -a -o "<BJOBS_FINAL_FIELDS>" -json <id>`:
 * `undefined` when LSF has forgotten the job (past `CLEAN_PERIOD`) or it has
 * not finished yet. EXIT_REASON carries LSF's termination reason
 * (`TERM_MEMLIMIT`, `TERM_RUNLIMIT`, `TERM_OWNER`, `TERM_ADMIN`,
 * `TERM_PREEMPT`, `TERM_HOST`…), in words or as the code.
 */
export function lsfEnd(stdout: string): TerminalReason | undefined {
  let records: BjobsRecord[];
  try {
    records = bjobsRecords(stdout);
  } catch {
    return undefined;
  }
  const r = records.find((rec) => FINISHED.has(field(rec, 'STAT')));
  if (!r) return undefined;
  const id = field(r, 'JOBID');
  const stat = field(r, 'STAT');
  const reason = field(r, 'EXIT_REASON');
  const exitText = field(r, 'EXIT_CODE');
  const exitCode = /^\d+$/.test(exitText) ? Number(exitText) : stat === 'DONE' ? 0 : undefined;
  const withReason = reason ? ` (${reason})` : '';
  if (/TERM_MEMLIMIT|memory (?:usage )?limit/i.test(reason)) {
    const limit = field(r, 'MEMLIMIT');
    const max = field(r, 'MAX_MEM');
    const numbers = limit || max ? ` (limit ${limit || 'unknown'}, max memory ${max || 'unknown'})` : '';
    return { kind: 'OUT_OF_MEMORY', exitCode, detail: `LSF job ${id} ran out of memory${numbers}` };
  }
  if (/TERM_RUNLIMIT|TERM_CPULIMIT|run ?time limit|CPU time limit/i.test(reason)) {
    const limit = field(r, 'RUNTIMELIMIT');
    return { kind: 'TIMEOUT', exitCode, detail: `LSF job ${id} reached its run time limit${limit ? ` (${limit})` : ''}` };
  }
  if (/TERM_PREEMPT|preempt/i.test(reason)) return { kind: 'PREEMPTED', exitCode, detail: `LSF job ${id} was preempted` };
  if (/TERM_OWNER|TERM_ADMIN|TERM_FORCE_OWNER|TERM_FORCE_ADMIN|killed by (?:owner|root|LSF admin)/i.test(reason)) {
    return { kind: 'CANCELLED', exitCode, detail: `LSF job ${id} was killed${withReason}` };
  }
  if (/TERM_HOST|TERM_LOAD|TERM_REMOVE_HUNG_JOB|TERM_ZOMBIE|host (?:failure|closed)/i.test(reason)) {
    return { kind: 'NODE_FAIL', exitCode, detail: `LSF job ${id} lost its host${withReason}` };
  }
  if (stat === 'DONE') return { kind: 'COMPLETED', exitCode: 0, detail: `LSF job ${id} exited 0` };
  return { kind: 'FAILED', exitCode, detail: `LSF job ${id} exited with code ${exitText || 'unknown'}${withReason}` };
}
