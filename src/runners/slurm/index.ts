/**
 * The Slurm runner and its building blocks.
 *
 * @module
 */
export { SlurmRunner, type SlurmRunnerEvents, type SlurmRunnerStatus } from './slurm-runner.js';
export {
  SLURM_RUNNER_DEFAULTS,
  resolveSlurmOptions,
  type ResolvedSlurmOptions,
  type RetryBackoff,
  type SlurmCommands,
  type SlurmRunnerOptions,
  type VanishGrace,
} from './options.js';
export type { LostJob } from './job.js';
export { SubmitGate, type GateOutcome, type GateTicket, type SubmitGateEvents } from './gate.js';
export { ScancelBatcher, type ScancelBatcherOptions } from './scancel.js';
export { Renicer, type RenicerOptions } from './renicer.js';
export {
  CommandTimeoutError,
  SLURM_COMMAND_CONCURRENCY,
  parseSbatchJobId,
  run,
  slurmCli,
  slurmCommandQueue,
  spawnCommand,
  type CommandRunner,
  type RunOptions,
  type RunResult,
  type SbatchOptions,
  type SlurmCli,
} from './commands.js';
export { classifySbatchFailure, classifySbatchStderr, type SbatchFailure, type SbatchFailureKind } from './errors.js';
export {
  DEFAULT_PRIORITY_SPREAD,
  reniceActions,
  slurmWantPriority,
  timestampNanos,
  wantNice,
  type NiceJob,
  type ReniceAction,
  type ReniceCandidate,
} from './nice.js';
export { batchScript, shellQuote } from './script.js';
export {
  SQUEUE_FORMAT,
  SqueueMonitor,
  SqueueMonitorStoppedError,
  parseSqueue,
  type SqueueJob,
  type SqueueMonitorEvents,
  type SqueueMonitorOptions,
  type SqueueSnapshot,
} from './squeue.js';
export {
  DEFAULT_RESERVE_EXTRA_RAM,
  DEFAULT_SBATCH_ARGUMENTS,
  DEFAULT_SBATCH_GPU_ARGUMENTS,
  INITIAL_NICE,
  SbatchTemplateError,
  estimateDockerImageSize,
  estimateScratchSpace,
  expandTemplates,
  gpuCount,
  sbatchArgs,
  templateValues,
  type SbatchArgsOptions,
  type TemplateValues,
} from './template.js';
