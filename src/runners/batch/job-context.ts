/**
 * What a batch job (one container's life in a batch system) uses of its
 * runner, and what it reports back.
 *
 * @module
 */
import type { ReleaseAction, ReleaseOptions } from '../../dispatcher/runner.js';
import type { BatchAdapter, CommandSpec, RunResult, TerminalKind, TerminalReason } from './adapter.js';
import type { Canceller } from './canceller.js';
import type { SharedVerdicts } from './echoes.js';
import type { ExecOptions } from './exec.js';
import type { SubmitGate } from './gate.js';
import type { JobSecrets } from './job-secrets.js';
import type { QueueMonitor } from './monitor.js';
import type { ResolvedBatchOptions } from './options.js';
import type { Renicer } from './renicer.js';

/** What happened to a container whose job left the queue without being cancelled by us. */
export interface LostJob {
  readonly uuid: string;
  /** The scheduler's job id, if it was known. */
  readonly jobId: string | undefined;
  /** What the release did (`none`: the container had finished by itself, or is no longer ours). */
  readonly action: ReleaseAction;
  /** Successful queue queries in a row that did not list the job. */
  readonly misses: number;
  /** Milliseconds from the first of those to the decision. */
  readonly ms: number;
  /** The reason given to the release (the `logs` record, and `runtime_status.error` if cancelled). */
  readonly reason: string;
  /** What the scheduler's accounting said, if anything. */
  readonly terminal: TerminalReason | undefined;
}

/** What a {@link BatchJob} uses of its runner. */
export interface JobContext {
  readonly adapter: BatchAdapter;
  readonly options: ResolvedBatchOptions;
  readonly monitor: QueueMonitor;
  readonly gate: SubmitGate;
  readonly canceller: Canceller;
  readonly renicer: Renicer;
  /** The per-job secrets files. */
  readonly secrets: JobSecrets;
  /** Verdicts that stop more than one container, and their evidence. */
  readonly verdicts: SharedVerdicts;
  /** Runs a command through the runner's limiter. */
  exec(spec: CommandSpec, options?: ExecOptions): Promise<RunResult>;
  /** Aborted when the runner closes. */
  readonly closed: AbortSignal;
  warn(message: string): void;
  submitted(uuid: string, result: 'ok' | 'error' | 'duplicate', jobId: string | undefined): void;
  lost(info: LostJob): void;
  finished(uuid: string, kind: TerminalKind | 'UNKNOWN'): void;
  /** The dispatcher's single release path. */
  release(uuid: string, options: ReleaseOptions): Promise<ReleaseAction>;
  /** Whether the dispatcher adopted the container (it was locked by our token before this process took it on). */
  adopted(uuid: string): boolean;
}

/** Where a container stands, for `schedulingStatus`. */
export type JobPhase = 'waiting' | 'submitting' | 'queued' | 'left';

