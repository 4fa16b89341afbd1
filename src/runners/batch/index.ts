/**
 * The batch core and its adapters: each container a job of a batch system.
 * An adapter ({@link BatchAdapter}) knows its commands and output formats;
 * {@link BatchRunner} holds every scheduler-neutral rule.
 *
 * @module
 */
export type {
  BatchAdapter,
  CommandOp,
  CommandSpec,
  ErrorClass,
  Exec,
  JobState,
  PriorityChange,
  QueueJob,
  RunResult,
  SubmitRequest,
  TemplateRules,
  TerminalKind,
  TerminalReason,
} from './adapter.js';
export { BatchRunner, type BatchRunnerEvents, type BatchRunnerStatus } from './runner.js';
export {
  BATCH_RUNNER_DEFAULTS,
  resolveBatchOptions,
  type BatchRunnerOptions,
  type ResolvedBatchOptions,
  type RetryBackoff,
  type SubmitRate,
  type VanishGrace,
} from './options.js';
export type { LostJob, JobPhase } from './job.js';
export { SubmitGate, type GateOutcome, type GateTicket, type SubmitGateEvents } from './gate.js';
export { Canceller, type CancellerOptions } from './canceller.js';
export { Renicer, type RenicerOptions } from './renicer.js';
export { CommandLimiter, parseRate } from './limiter.js';
export { classifyOutcome, complaint, type CommandRecord, type ExecOptions } from './exec.js';
export { CommandTimeoutError, spawnCommand, type CommandRunner, type RunOptions } from './commands.js';
export {
  DEFAULT_PRIORITY_SPREAD,
  planNice,
  timestampNanos,
  wantNice,
  wantPriority,
  wantedOrder,
  type NiceJob,
  type ReniceCandidate,
} from './priority.js';
export { batchScript, shellQuote } from './script.js';
export { QueueMonitor, QueueMonitorStoppedError, byName, type QueueMonitorEvents, type QueueMonitorOptions, type QueueSnapshot } from './monitor.js';
export {
  STANDARD_PLACEHOLDERS,
  TemplateError,
  containerArguments,
  type ContainerArgumentsOptions,
  estimateDockerImageSize,
  estimateScratchSpace,
  expandTemplates,
  gpuCount,
  templateValues,
  validateTemplates,
  type TemplateValueOptions,
  type TemplateValues,
} from './template.js';
export { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';

// Slurm.
export {
  DEFAULT_SBATCH_ARGUMENTS,
  DEFAULT_SBATCH_GPU_ARGUMENTS,
  INITIAL_NICE,
  SLURM_RUNNER_DEFAULTS,
  SLURM_TEMPLATE_RULES,
  SQUEUE_FORMAT,
  SlurmAdapter,
  SlurmRunner,
  parseSacct,
  parseSbatchJobId,
  parseScontrolJob,
  parseSqueue,
  slurmBytes,
  terminalReason,
  type SlurmAdapterOptions,
  type SlurmCommands,
  type SlurmJobEnd,
  type SlurmRunnerOptions,
} from './slurm.js';
export { classifySbatchStderr, classifySlurmFailure } from './slurm-errors.js';
