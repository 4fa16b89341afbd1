/**
 * The contract between the scheduler-neutral batch core and one batch system
 * (Slurm, LSF, Grid Engine). An adapter knows only its commands and their
 * output formats; every rule about when to run them (submit gate, retries,
 * idempotent submission, one poller, vanish grace, batched cancellation,
 * renicing, orphans, rate limits, releases) lives in the core.
 *
 * An adapter never runs a command itself, except through the {@link Exec}
 * the core hands to {@link BatchAdapter.finalState}, so that every command
 * goes through the one limiter (concurrency and rate) and is counted.
 *
 * @module
 */
import type { Container } from '../../types.js';
import type { Clock } from '../../util/sleep.js';

/** How a command ended (whatever its exit status). */
export interface RunResult {
  /** Exit code; null if a signal killed it. */
  code: number | null;
  /** The signal that killed it, if any. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * One command to run. `command` is a key of {@link BatchAdapter.commands}
 * (e.g. `sbatch`); the core maps it to the configured executable. Arguments
 * are an array: no shell ever sees them.
 */
export interface CommandSpec {
  /** A key of {@link BatchAdapter.commands}. */
  readonly command: string;
  readonly args: readonly string[];
  /** Written to the command's stdin (e.g. the batch script); without it stdin is /dev/null. */
  readonly input?: string;
}

/**
 * Runs one command through the core's limiter (concurrency, rate, timeout,
 * counters). Resolves with the result whatever the exit status; rejects if
 * the command could not be started, timed out, or `signal` aborted.
 */
export type Exec = (spec: CommandSpec, signal?: AbortSignal) => Promise<RunResult>;

/** What the core was doing when a command failed. */
export type CommandOp = 'submit' | 'query' | 'cancel' | 'renice' | 'accounting';

/**
 * What a failed command means for the next attempt:
 * - `transient`: the scheduler was unreachable or busy; the same command may
 *   work in a moment (retry with backoff).
 * - `backpressure`: the scheduler refused for a submit limit or quota; pause
 *   every submission until one of our jobs leaves the queue.
 * - `fatal`: this request is wrong (bad partition, resources…) and fails the
 *   same way again; the container is released.
 * - `configuration`: our configuration or this host is wrong (command
 *   missing or not executable, permission denied, bad template); no
 *   container is charged, new locks stop (`RunnerConfigError`).
 */
export type ErrorClass = 'transient' | 'backpressure' | 'fatal' | 'configuration';

/**
 * What a failed command means, and what the core should stop asking for
 * because the scheduler refuses it for good (the adapter keeps no such
 * state; the core does):
 * - `renice`: stop changing priorities (LSF: user priorities not enabled);
 * - `raise`: only ever lower priorities (Grid Engine: raising is for operators).
 */
export interface Verdict {
  readonly kind: ErrorClass;
  readonly disable?: 'renice' | 'raise';
}

/** What the core has learnt the scheduler refuses, passed back to {@link BatchAdapter.planPriorities}. */
export interface PriorityLimits {
  /** False once the scheduler refused to raise a job's priority. */
  readonly mayRaise: boolean;
}

/** The scheduler-neutral state of a queued job. */
export type JobState = 'pending' | 'running' | 'other';

/** One of our jobs as the queue query shows it. */
export interface QueueJob {
  /** The scheduler's job id (a string: some schedulers use `123.4` or arrays). */
  readonly jobId: string;
  /** The job name, which the core sets to the container UUID. */
  readonly name: string;
  /** `pending` (waiting to start), `running`, or `other` (completing, suspended, held…). */
  readonly state: JobState;
  /** The scheduler's own state word (e.g. `COMPLETING`, `qw`), for messages. */
  readonly rawState: string;
  /**
   * The scheduler's effective priority (larger starts first), or 0 if it
   * does not report one. Renicing uses it together with {@link nice}.
   */
  readonly priority: number;
  /**
   * The adjustable part of the priority that renicing changes (Slurm's nice;
   * `priority + nice` is the base priority). 0 where the scheduler has none.
   */
  readonly nice: number;
  /** Why the job is pending, in the scheduler's words (e.g. `Priority`); '' if none. */
  readonly pendingReason: string;
  /** The node(s) a running job runs on, if the query shows them. */
  readonly nodes?: string;
}

/** What the core asks an adapter to submit. */
export interface SubmitRequest {
  /** The container UUID: the job name, always. */
  readonly uuid: string;
  /** The batch script (it reads the job's secrets file and `exec`s crunch-run; no credentials in it). */
  readonly script: string;
  /** The expanded argument templates (and GPU templates when the container wants GPUs). */
  readonly args: readonly string[];
  /** The container record the arguments were expanded from. */
  readonly container: Readonly<Container>;
  /** The instance type `%I` expanded to ('' when none is configured). */
  readonly instanceType?: string;
}

/** How a job ended, from the scheduler's accounting. */
export type TerminalKind = 'OUT_OF_MEMORY' | 'TIMEOUT' | 'NODE_FAIL' | 'PREEMPTED' | 'CANCELLED' | 'FAILED' | 'COMPLETED';

/** Why a job ended, as far as the scheduler knows. */
export interface TerminalReason {
  readonly kind: TerminalKind;
  /** The job's exit code, if the scheduler reports one. */
  readonly exitCode?: number;
  /**
   * One line for the container's owner, e.g. "Slurm job 1234 ran out of
   * memory (requested 4 GiB, max RSS 4.1 GiB)". Never contains a secret.
   */
  readonly detail: string;
}

/** One change of a pending job's scheduler priority. */
export interface PriorityChange {
  readonly job: QueueJob;
  /** The new value, in the unit of {@link BatchAdapter.renice} (Slurm: nice). */
  readonly value: number;
}

/** How an adapter's argument templates are expanded (see `template.ts`). */
export interface TemplateRules {
  /**
   * The placeholders this batch system accepts, e.g. `['%C', '%M', '%T',
   * '%G', '%W', '%U', '%P', '%I']` (`%%` is always accepted). A template
   * with any other `%x` is refused at startup.
   */
  readonly placeholders: readonly string[];
  /** Placeholders whose empty value drops the argument (Slurm: `%P` and `%W`). */
  readonly dropWhenEmpty: readonly string[];
  /**
   * `argument`: drop only the argument holding the empty substitution
   * (`--partition=%P`); `pair`: also the argument before it, for templates
   * written as option/value pairs (`-W`, `%W`), as Arvados' LSF dispatcher does.
   */
  readonly dropMode: 'argument' | 'pair';
}

/**
 * A batch system. Every method is pure (it builds a command or reads an
 * output) except {@link finalState}, which runs commands through the core's
 * {@link Exec}.
 */
export interface BatchAdapter {
  /** The batch system's name for messages: `Slurm`, `LSF`, `Grid Engine`. */
  readonly name: string;
  /**
   * The commands this adapter runs: logical name -> executable (a bare name
   * is looked up on `PATH`). The CLI checks each exists at startup.
   */
  readonly commands: Readonly<Record<string, string>>;
  /** How this adapter's templates are expanded and validated. */
  readonly templates: TemplateRules;
  /**
   * Variables of the dispatcher's environment the submit command (and so the
   * job) also gets, besides `PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`,
   * `LC_ALL`, `TZ` and `TMPDIR`; a trailing `*` is a prefix (e.g. `SBATCH_*`).
   */
  readonly passEnv?: readonly string[];
  /**
   * The user jobs run as when it is not this process's user (LSF through
   * `sudo -u`): the per-job secrets file must be readable by that user.
   */
  readonly jobUser?: string;

  /**
   * The system's max-run-time rule: `%W` in minutes for `container` (0 for
   * no limit). Optional; by default `%W` is the container's `max_run_time`
   * rounded up to minutes. Pure.
   */
  maxRunMinutes?(container: Readonly<Container>): number;

  /**
   * The submit command for one container: job name = `req.uuid` (or the
   * system's mapping of it), script on stdin, and `req.args` as the
   * expanded templates: an adapter never expands templates itself.
   */
  submit(req: SubmitRequest): CommandSpec;
  /** The job id in a successful submit command's answer, if it can be read. */
  parseSubmit(result: RunResult): string | undefined;

  /** The queue query listing our own jobs (only ours, however many other jobs exist). */
  queueQuery(): CommandSpec;
  /**
   * Our jobs in a successful query's output. Lines that are not container
   * jobs are skipped; malformed ones go to `onBadLine` and are skipped.
   */
  parseQueue(stdout: string, onBadLine?: (line: string) => void): QueueJob[];

  /**
   * The commands that cancel `jobs` (one batch; the core splits large sets).
   * Pending jobs are removed; running ones get a signal crunch-run handles
   * (SIGTERM to the batch step), never an immediate kill.
   */
  cancel(jobs: readonly QueueJob[]): CommandSpec[];
  /**
   * Whether a failed cancel command only says that (some of) its jobs had
   * already left the queue, which counts as success.
   */
  cancelGone(result: RunResult): boolean;

  /** The command that sets one pending job's priority to `value`; absent if the system cannot reprioritise. */
  renice?(job: QueueJob, value: number): CommandSpec;
  /**
   * Given our pending jobs in the order Arvados wants (most wanted first),
   * the changes that put them in that order. Optional: by default the core
   * uses its nice-gap plan (`wantNice`), which fits any system where a larger
   * value lowers a job (`priority + nice` constant).
   */
  planPriorities?(jobsInWantedOrder: readonly QueueJob[], spread: number, limits: PriorityLimits): PriorityChange[];

  /**
   * What a failed command (non-zero exit, or an error running it) means; see
   * {@link ErrorClass}, or a {@link Verdict} when the scheduler refused
   * something for good. Pure: the adapter changes nothing.
   */
  classify(outcome: RunResult | Error, op: CommandOp): ErrorClass | Verdict;

  /**
   * A pending reason that can never clear as submitted (a partition that does
   * not exist, constraints no node meets): the core cancels the container
   * with the reason after a grace period.
   */
  neverClears(pendingReason: string): boolean;

  /**
   * How the job ended, from the scheduler's accounting, once it has left the
   * queue; undefined if the scheduler cannot tell (no accounting, record
   * expired). Optional. `clock` is the runner's, for any wait between
   * tries (so a test clock drives them too).
   */
  finalState?(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal, clock?: Clock): Promise<TerminalReason | undefined>;

  /**
   * Whether the scheduler's accounting says the job is still alive (running,
   * pending, suspended) although the queue query no longer lists it: a
   * listing that missed a job must not cost its container. Optional; a
   * lookup that fails answers false.
   */
  stillRunning?(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal): Promise<boolean>;
}
