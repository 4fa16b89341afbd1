/**
 * Runners: what to do with a container once the Dispatcher has it. Each
 * runner uses only the Dispatcher's public API.
 *
 * @module
 */

// Local runner: crunch-run as a child process on this machine.
export * from './local/index.js';

// Batch systems: the scheduler-neutral core (and what an adapter of another
// system needs) and the Slurm, LSF and Grid Engine runners. Named exports,
// since the local and batch modules both re-export DEFAULT_RESERVE_EXTRA_RAM
// (from ./defaults.ts); the parsers and other parts stay internal.
export {
  BatchRunner,
  BATCH_RUNNER_DEFAULTS,
  DEFAULT_PRIORITY_SPREAD,
  TemplateError,
  type BatchAdapter,
  type BatchRunnerOptions,
  type BatchRunnerEvents,
  type BatchRunnerStatus,
  type CommandRecord,
  type ResolvedBatchOptions,
  type CommandOp,
  type CommandSpec,
  type ErrorClass,
  type Exec,
  type JobState,
  type PriorityChange,
  type QueueJob,
  type SubmitRequest,
  type TemplateRules,
  type TerminalKind,
  type TerminalReason,
  type LostJob,
  type VanishGrace,
  type RetryBackoff,
  type SubmitRate,
  type CommandRunner,
  CommandTimeoutError,
  spawnCommand,
  type RunOptions,
  type RunResult,
  // Slurm.
  SlurmAdapter,
  SlurmRunner,
  SLURM_RUNNER_DEFAULTS,
  DEFAULT_SBATCH_ARGUMENTS,
  DEFAULT_SBATCH_GPU_ARGUMENTS,
  type SlurmAdapterOptions,
  type SlurmCommands,
  type SlurmRunnerOptions,
  // LSF.
  LsfAdapter,
  LsfRunner,
  DEFAULT_BSUB_ARGUMENTS,
  DEFAULT_BSUB_GPU_ARGUMENTS,
  DEFAULT_MAX_RUN_TIME_OVERHEAD,
  DEFAULT_MAX_USER_PRIORITY,
  type BsubOptions,
  type LsfAdapterOptions,
  type LsfRunnerOptions,
  // Grid Engine.
  SgeAdapter,
  SgeRunner,
  DEFAULT_QSUB_ARGUMENTS,
  DEFAULT_QSUB_GPU_ARGUMENTS,
  type SgeAdapterOptions,
  type SgeRunnerOptions,
} from './batch/index.js';
