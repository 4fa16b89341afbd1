/**
 * Running an adapter's commands: configured paths, the runner's one limiter
 * (concurrency and rate), a timeout, and a `command` event for metrics.
 * Also the core's first word on what a failure means, before the adapter's.
 *
 * @module
 */
import { logger } from '../../log.js';
import { realClock, type Clock } from '../../util/sleep.js';
import type { BatchAdapter, CommandOp, CommandSpec, ErrorClass, RunResult, Verdict } from './adapter.js';
import { CommandTimeoutError, spawnCommand, type CommandRunner } from './commands.js';
import type { CommandLimiter } from './limiter.js';
import { withoutEchoes } from './echoes.js';

const log = logger('batch:exec');

/** Per-call options of an {@link Executor}. */
export interface ExecOptions {
  /** The command's whole environment (the submit command's carries the credentials). */
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** What the command is for; classifies failures in the `command` record. */
  op?: CommandOp;
  /** Start only when no other command waits for the limiter (lookups for metrics). */
  background?: boolean;
  /** Values a container chose, cut out of the output before a failure is classified (see `echoes.ts`). */
  echoes?: readonly string[];
}

/** One command run, for metrics. */
export interface CommandRecord {
  /** The adapter's command name (e.g. `sbatch`). */
  command: string;
  durationMs: number;
  result: 'ok' | 'error';
  /** For `error`: what the failure means (when the command's purpose is known). */
  errorClass?: ErrorClass;
}

/**
 * What a failed command means: a command that cannot be started (missing,
 * not executable) is `configuration`; a timeout or a kill by a signal is
 * `transient`; anything else is the adapter's call.
 */
export function classifyOutcome(adapter: BatchAdapter, outcome: RunResult | Error, op: CommandOp): ErrorClass {
  return verdictOf(adapter, outcome, op).kind;
}

/** {@link classifyOutcome} with what the adapter says to stop asking for, if anything. */
export function verdictOf(adapter: BatchAdapter, outcome: RunResult | Error, op: CommandOp): Verdict {
  if (outcome instanceof CommandTimeoutError) return { kind: 'transient' };
  if (outcome instanceof Error && cannotStart(outcome)) return { kind: 'configuration' };
  if (!(outcome instanceof Error) && outcome.code === null) return { kind: 'transient' };
  const v = adapter.classify(outcome, op);
  return typeof v === 'string' ? { kind: v } : v;
}

/** True if `err` says the command could not be started at all (missing, not executable). */
function cannotStart(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'EACCES' || code === 'EPERM' || code === 'ENOEXEC';
}

/** Patterns of a batch system's complaints, by what they mean; the first list that matches wins, in this order. */
export interface ComplaintPatterns {
  /** Refusals only an operator can fix (permissions, not a submit host...). */
  configuration: readonly RegExp[];
  /** Limits that clear as jobs finish (too many jobs...). */
  backpressure: readonly RegExp[];
  /** A scheduler that is down or busy for now. */
  transient: readonly RegExp[];
}

/**
 * An adapter's `classify` for systems whose complaints are read by pattern:
 * a timeout, a kill by a signal or an error running the command is
 * `transient` (one that cannot start is `configuration`); a non-zero exit is
 * read from stderr and stdout by `patterns`, else it is `otherwise`.
 */
export function classifyByComplaint(outcome: RunResult | Error, patterns: ComplaintPatterns, otherwise: ErrorClass): ErrorClass {
  if (outcome instanceof CommandTimeoutError) return 'transient';
  if (outcome instanceof Error) return cannotStart(outcome) ? 'configuration' : 'transient';
  if (outcome.code === null) return 'transient';
  const text = `${outcome.stderr}\n${outcome.stdout}`;
  const matches = (list: readonly RegExp[]): boolean => list.some((re) => re.test(text));
  if (matches(patterns.configuration)) return 'configuration';
  if (matches(patterns.backpressure)) return 'backpressure';
  if (matches(patterns.transient)) return 'transient';
  return otherwise;
}

/** The most telling line of a command's complaint, for messages. */
export function complaint(r: RunResult | Error): string {
  if (r instanceof Error) return r.message;
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const last = lines.filter((l) => /failed|error|denied|invalid/i.test(l)).pop() ?? lines.pop();
  return last ?? (r.code === null ? `killed by ${r.signal}` : `exit status ${r.code}`);
}

/** Runs commands for one runner. */
export class Executor {
  readonly #adapter: BatchAdapter;
  readonly #runner: CommandRunner;
  readonly #limiter: CommandLimiter;
  readonly #timeoutMs: number;
  readonly #record: (r: CommandRecord) => void;
  readonly #disable: (what: NonNullable<Verdict['disable']>) => void;
  readonly #clock: Clock;

  /**
   * @param disable - Told when a verdict says to stop asking for something (see {@link Verdict}).
   * @param clock - Times each command (the runner's clock).
   */
  constructor(
    adapter: BatchAdapter,
    limiter: CommandLimiter,
    timeoutMs: number,
    record: (r: CommandRecord) => void,
    runner: CommandRunner = spawnCommand,
    disable: (what: NonNullable<Verdict['disable']>) => void = () => {},
    clock: Clock = realClock,
  ) {
    this.#clock = clock;
    this.#adapter = adapter;
    this.#disable = disable;
    this.#runner = runner;
    this.#limiter = limiter;
    this.#timeoutMs = timeoutMs;
    this.#record = record;
  }

  /** Runs `spec` through the limiter (submit, cancel, renice, accounting). */
  limited(spec: CommandSpec, options: ExecOptions = {}): Promise<RunResult> {
    return this.#limiter.run(() => this.direct(spec, options), options.signal, options.background);
  }

  /**
   * Runs `spec` outside the limiter: only the queue query, which one poller
   * runs once per interval whatever the load.
   */
  async direct(spec: CommandSpec, options: ExecOptions = {}, timeoutMs = this.#timeoutMs): Promise<RunResult> {
    const path = Object.hasOwn(this.#adapter.commands, spec.command) ? this.#adapter.commands[spec.command] : spec.command;
    const started = this.#clock.now();
    log('%s %o', spec.command, spec.args);
    try {
      const r = await this.#runner(path, spec.args, { input: spec.input, env: options.env, signal: options.signal, timeoutMs });
      this.#done(spec, started, withoutEchoes(r, options.echoes ?? []), options.op);
      return r;
    } catch (err) {
      if (!options.signal?.aborted) this.#done(spec, started, err instanceof Error ? err : new Error(String(err)), options.op);
      throw err;
    }
  }

  #done(spec: CommandSpec, started: number, outcome: RunResult | Error, op: CommandOp | undefined): void {
    const durationMs = this.#clock.now() - started;
    if (!(outcome instanceof Error) && outcome.code === 0) {
      this.#record({ command: spec.command, durationMs, result: 'ok' });
      return;
    }
    const verdict = op === undefined ? undefined : verdictOf(this.#adapter, outcome, op);
    if (verdict?.disable) this.#disable(verdict.disable);
    const errorClass = verdict?.kind;
    this.#record({ command: spec.command, durationMs, result: 'error', ...(errorClass ? { errorClass } : {}) });
  }
}
