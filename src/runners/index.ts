/**
 * Runners: what to do with a container once the Dispatcher has it. Each
 * runner uses only the Dispatcher's public API.
 *
 * @module
 */

// Local runner: crunch-run as a child process on this machine.
export * from './local/index.js';

// Batch systems: the scheduler-neutral core, then one runner per system
// (each a thin class over the core with the system's adapter). Named
// exports: the local and batch modules both have DEFAULT_RESERVE_EXTRA_RAM,
// and the adapter contract is internal (see docs/design.md): parsers,
// descriptors and the registry stay inside the package.
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
  type PriorityLimits,
  type QueueJob,
  type SubmitRequest,
  type TemplateRules,
  type TerminalKind,
  type TerminalReason,
  type Verdict,
  type LostJob,
  type VanishGrace,
  type RetryBackoff,
  type SubmitRate,
  type CommandRunner,
  CommandTimeoutError,
  spawnCommand,
  type RunOptions,
  type RunResult,
} from './batch/index.js';
// Slurm.
export {
  SlurmAdapter,
  SlurmRunner,
  SLURM_RUNNER_DEFAULTS,
  DEFAULT_SBATCH_ARGUMENTS,
  DEFAULT_SBATCH_GPU_ARGUMENTS,
  type SlurmAdapterOptions,
  type SlurmCommands,
  type SlurmRunnerOptions,
} from './batch/slurm/index.js';
// LSF.
export {
  LsfAdapter,
  LsfRunner,
  DEFAULT_BSUB_ARGUMENTS,
  DEFAULT_BSUB_GPU_ARGUMENTS,
  DEFAULT_MAX_RUN_TIME_OVERHEAD,
  DEFAULT_MAX_USER_PRIORITY,
  type BsubOptions,
  type LsfAdapterOptions,
  type LsfRunnerOptions,
} from './batch/lsf/index.js';
// Grid Engine.
export { SgeAdapter, SgeRunner, DEFAULT_QSUB_ARGUMENTS, DEFAULT_QSUB_GPU_ARGUMENTS, type SgeAdapterOptions, type SgeRunnerOptions } from './batch/sge/index.js';
// OpenPBS / PBS Professional.
export { PbsAdapter, PbsRunner, DEFAULT_PBS_QSUB_ARGUMENTS, DEFAULT_PBS_QSUB_GPU_ARGUMENTS, type PbsAdapterOptions, type PbsRunnerOptions } from './batch/pbs/index.js';
