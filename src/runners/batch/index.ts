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
export { classifyByComplaint, classifyOutcome, complaint, type CommandRecord, type ComplaintPatterns, type ExecOptions } from './exec.js';
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
} from './slurm/adapter.js';
export { classifySbatchStderr, classifySlurmFailure } from './slurm/errors.js';

// IBM Spectrum LSF.
export { DEFAULT_MAX_USER_PRIORITY, LsfAdapter, LsfRunner, type LsfAdapterOptions, type LsfRunnerOptions } from './lsf/adapter.js';
export { DEFAULT_BSUB_ARGUMENTS, DEFAULT_BSUB_GPU_ARGUMENTS, DEFAULT_MAX_RUN_TIME_OVERHEAD, LSF_TEMPLATE_RULES, bsubArgs, type BsubOptions } from './lsf/template.js';
export { BjobsParseError, classifyLsf, lsfEnd, parseBjobs, parseBsubJobId } from './lsf/output.js';

// Grid Engine.
export {
  DEFAULT_QSUB_ARGUMENTS,
  DEFAULT_QSUB_GPU_ARGUMENTS,
  SGE_TEMPLATE_RULES,
  SgeAdapter,
  SgeRunner,
  type SgeAdapterOptions,
  type SgeRunnerOptions,
} from './sge/adapter.js';
export { classifySge, parseQsubJobId } from './sge/output.js';
export { parseQacct, sgeEnd, type SgeAccounting, type SgeEnd, type SgeEndKind } from './sge/qacct.js';
export { QstatParseError, parseQstatXml, type SgeJob } from './sge/qstat.js';
