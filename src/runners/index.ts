/**
 * Runners: what to do with a container once the Dispatcher has it. Each
 * runner uses only the Dispatcher's public API.
 *
 * @module
 */

// Local runner: crunch-run as a child process on this machine.
export * from './local/index.js';

// Batch systems: the scheduler-neutral core and the Slurm adapter. Named
// exports, since both runner modules re-export DEFAULT_RESERVE_EXTRA_RAM
// (from ./defaults.ts).
export {
  BatchRunner,
  BATCH_RUNNER_DEFAULTS,
  SlurmAdapter,
  SlurmRunner,
  SLURM_RUNNER_DEFAULTS,
  DEFAULT_SBATCH_ARGUMENTS,
  DEFAULT_SBATCH_GPU_ARGUMENTS,
  DEFAULT_PRIORITY_SPREAD,
  TemplateError,
  type BatchAdapter,
  type BatchRunnerOptions,
  type BatchRunnerEvents,
  type BatchRunnerStatus,
  type CommandSpec,
  type ErrorClass,
  type QueueJob,
  type TerminalReason,
  type SlurmRunnerOptions,
  type LostJob,
  type VanishGrace,
  type RetryBackoff,
  type SubmitRate,
  type SlurmCommands,
  type CommandRunner,
  type RunOptions,
  type RunResult,
} from './batch/index.js';
