/**
 * The scheduler-neutral batch core: {@link BatchRunner} holds every rule
 * that is the same for all batch systems; a {@link BatchAdapter} knows one
 * system's commands and output formats. This barrel lists the core only:
 * the systems live in their own folders (`slurm/`, `lsf/`, `sge/`, `pbs/`)
 * and `registry.ts` lists them; nothing here imports them.
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
  PriorityLimits,
  QueueJob,
  RunResult,
  SubmitRequest,
  TemplateRules,
  TerminalKind,
  TerminalReason,
  Verdict,
} from './adapter.js';
export { BatchRunner, type BatchRunnerEvents, type BatchRunnerStatus } from './runner.js';
export { BATCH_RUNNER_DEFAULTS, type BatchRunnerOptions, type ResolvedBatchOptions, type RetryBackoff, type SubmitRate, type VanishGrace } from './options.js';
export type { LostJob } from './job-context.js';
export type { CommandRecord } from './exec.js';
export { CommandTimeoutError, spawnCommand, type CommandRunner, type RunOptions } from './commands.js';
export { DEFAULT_PRIORITY_SPREAD } from './priority.js';
export { TemplateError } from './template.js';
export { createBatchRunner, type BatchSystemDescriptor } from './descriptor.js';
