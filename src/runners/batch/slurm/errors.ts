/**
 * What a failed Slurm command means for the next attempt, read from its stderr.
 *
 * The messages below are Slurm's own (`src/common/slurm_errno.c`, sbatch's
 * `src/sbatch/sbatch.c`, and the job-reason names of `job_state_reason_string`),
 * each also seen in the wild where noted.
 *
 * @module
 */
import type { CommandOp, ErrorClass, RunResult } from '../adapter.js';
import { CommandTimeoutError } from '../commands.js';

// A limit on how many jobs may be queued. sbatch prints the reason on its own
// line before the generic "Job violates accounting/QOS policy" line.
const BACKPRESSURE: readonly RegExp[] = [
  // QOSMaxSubmitJobPerUserLimit, QOSMaxSubmitJobPerAccountLimit,
  // QOSGrpSubmitJobsLimit, AssocMaxSubmitJobLimit, AssocGrpSubmitJobsLimit:
  // job reasons in Slurm's job_state_reason_string(); e.g. "salloc: error:
  // QOSMaxSubmitJobPerUserLimit" (szcf-weiya/techNotes#7), "sbatch: error:
  // AssocMaxSubmitJobLimit" (rwth-i6/sisyphus#241).
  /\b(?:QOS|Assoc)\w*SubmitJobs?\w*Limit\b/i,
  // "sbatch: error: MaxSubmitJobsPerUser" / "MaxSubmitJobsPerAccount" (Stanford
  // Sherlock docs, stanford-rc/www.sherlock.stanford.edu job-management.md),
  // and plain MaxSubmitJobLimit.
  /\bMaxSubmitJobs?\w*/i,
  // ESLURM_MAX_JOB_COUNT: the whole cluster's queue is full.
  /MaxJobCount limit reached/i,
  // SLURMCTLD_COMMUNICATIONS_BACKOFF / _HARD_DROP: slurmctld's RPC rate limit
  // (Slurm 23.02+): we are submitting too fast.
  /Rate limit exceeded/i,
  // sbatch's own retry note for ESLURM_ERROR_ON_DESC_TO_RECORD_COPY.
  /Slurm job queue full/i,
];

// ESLURM_ACCOUNTING_POLICY's text. It names the submit limit but Slurm uses it
// for every accounting/QOS limit, e.g. "sbatch: error:
// QOSMaxWallDurationPerJobLimit" followed by this line (BSC-ES/autosubmit#2854).
// Alone it most often means the submit limit (mlr-org/batchtools#199,
// jade-hpc-gpu/jade-hpc-gpu.github.io#78, vatlab/sos#898).
const ACCOUNTING_POLICY = /Job violates accounting\/QOS policy/i;

// Limits on a single job's size or time: this job can never be accepted.
// QOSMaxWallDurationPerJobLimit, AssocMaxCpuPerJobLimit, QOSMaxNodePerJobLimit…
const PER_JOB_LIMIT = /\b(?:QOS|Assoc)Max\w*PerJob\w*|\bQOSMin\w*NotSatisfied\b/i;

const TRANSIENT: readonly RegExp[] = [
  // SLURM_PROTOCOL_SOCKET_IMPL_TIMEOUT, the classic "controller overloaded":
  // snakemake/snakemake#1789, DataBiosphere/toil#2381, facebookincubator/submitit#1659,
  // ENCODE-DCC/chip-seq-pipeline2#150.
  /Socket timed out on send\/recv operation/i,
  // SLURMCTLD_COMMUNICATIONS_{CONNECTION,SEND,RECEIVE,SHUTDOWN}_ERROR, e.g.
  // "Batch job submission failed: Unable to contact slurm controller (connect
  // failure)" (galaxyproject/pulsar#254; also seen here with slurmctld down).
  /Unable to contact slurm controller/i,
  // EAGAIN as the final error after sbatch's own retries ("Batch job
  // submission failed: Resource temporarily unavailable").
  /Resource temporarily unavailable/i,
  // sbatch's EAGAIN retry note "Slurm temporarily unable to accept job,
  // sleeping and retrying" (rwth-i6/sisyphus#156), and similar wording.
  /temporarily (?:unable|unavailable|disabled)/i,
  // SLURM_UNEXPECTED_MSG_ERROR, reported under load by
  // snakemake/snakemake-executor-plugin-slurm#313.
  /Unexpected message received/i,
  // Socket-level failures (ECONNREFUSED, ECONNRESET, ETIMEDOUT) and
  // SLURM_PROTOCOL_SOCKET_ZERO_BYTES_SENT / SLURM_COMMUNICATIONS_* errors.
  /Connection (?:refused|reset|timed out)/i,
  /Zero Bytes were transmitted or received/i,
  /Communication connection failure|Message (?:send|receive) failure/i,
  // ESLURM_IN_STANDBY_MODE / ESLURM_IN_STANDBY_USE_BACKUP: failover under way.
  /standby mode/i,
  // ESLURM_TRANSITION_STATE_NO_UPDATE and friends: "…, try again later".
  /try again/i,
  // ESLURM_WRITING_TO_FILE: slurmctld's state disk is full or failing, which
  // is the site's problem, not this job's (c3nl-neuraldynamics/c3nl_cluster#38,
  // ArjunaCluster/ArjunaUsers#212: "root dir being full").
  /I\/O error writing script\/environment to file/i,
];

// sbatch prints these while it retries by itself (sbatch.c); they describe
// the attempts, not the outcome, once a final "submission failed" follows.
const RETRY_NOTE = /sleeping and retrying|temporarily disabled, retrying/i;
const FINAL_FAILURE = /submission failed:/i;

// Our own arguments are wrong (a template with an option sbatch does not
// know), or this host may not use Slurm: no container's fault.
const CONFIGURATION = /unrecognized option|invalid option|option requires an argument|Invalid user|Permission denied|Access\/permission denied|Unable to open file/i;

/**
 * Classifies a failed sbatch from its stderr (call it only when sbatch exited
 * non-zero; on success sbatch may still print retry notes).
 *
 * Precedence: our own bad option or a permission problem is
 * `configuration`; a per-job limit is `fatal`; then submit limits and the bare
 * accounting-policy message are `backpressure`; then controller and network
 * trouble is `transient`; anything else is `fatal`.
 *
 * @example
 * classifySbatchStderr('sbatch: error: Batch job submission failed: Socket timed out on send/recv operation')
 * // => 'transient'
 */
export function classifySbatchStderr(stderr: string): ErrorClass {
  let text = stderr;
  if (FINAL_FAILURE.test(text)) {
    text = text
      .split('\n')
      .filter((line) => !RETRY_NOTE.test(line))
      .join('\n');
  }
  if (CONFIGURATION.test(text)) return 'configuration';
  if (PER_JOB_LIMIT.test(text)) return 'fatal';
  if (BACKPRESSURE.some((re) => re.test(text)) || ACCOUNTING_POLICY.test(text)) return 'backpressure';
  if (TRANSIENT.some((re) => re.test(text))) return 'transient';
  return 'fatal';
}

/**
 * Classifies a failed Slurm command, whether it exited non-zero or could not
 * be run to the end. sbatch's stderr is read by {@link classifySbatchStderr};
 * for the other commands a failure is `transient` (the next poll or snapshot
 * repeats them) unless it says our arguments or permissions are wrong.
 *
 * A timeout or a kill by a signal is `transient`. Beware that sbatch may
 * have submitted the job before it was stopped: check the queue before
 * submitting again. A command that cannot be started at all (not installed,
 * not executable) is `configuration`.
 */
export function classifySlurmFailure(failure: RunResult | Error, op: CommandOp = 'submit'): ErrorClass {
  if (failure instanceof CommandTimeoutError) return 'transient';
  if (failure instanceof Error) {
    const code = (failure as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EACCES') return 'configuration';
    // Aborted by the caller, EAGAIN from fork(), …: nothing says the next
    // attempt will fail the same way.
    return 'transient';
  }
  if (failure.code === null) return 'transient';
  if (op === 'submit') return classifySbatchStderr(failure.stderr);
  return CONFIGURATION.test(failure.stderr) ? 'configuration' : 'transient';
}
