/**
 * IBM Spectrum LSF as a batch system for the core, with the behaviour of
 * Arvados' `arvados-dispatch-lsf`: `bsub` with the script on stdin and the
 * `BsubArgumentsList` templates (optionally through `sudo -E -u USER`),
 * `bjobs -json` for our jobs, `bkill` until the job is gone, and a pending
 * reason saying no host can ever take the job cancels its container.
 *
 * Beyond Arvados: `bmod -sp` keeps the user priorities of pending jobs in
 * Arvados' order, and `bjobs -a` tells why a job ended.
 *
 * @module
 */
import type { BatchAdapter, CommandOp, CommandSpec, ErrorClass, Exec, PriorityChange, QueueJob, RunResult, SubmitRequest, TemplateRules, TerminalReason, Verdict } from '../adapter.js';
import { BJOBS_FIELDS, BJOBS_FINAL_FIELDS, bkillOnlyGone, classifyLsf, lsfEnd, lsfNeverClears, parseBjobs, parseBsubJobId } from './output.js';
import type { Container } from '../../../types.js';
import { LSF_TEMPLATE_RULES, DEFAULT_BSUB_ARGUMENTS, DEFAULT_BSUB_GPU_ARGUMENTS, maxRunMinutes, type BsubOptions } from './template.js';
import type { BatchRunnerOptions } from '../options.js';
import { BatchRunner } from '../runner.js';
import { userName } from '../user.js';

/** The highest user priority LSF allows by default (`MAX_USER_PRIORITY` in lsb.params is often 100). */
export const DEFAULT_MAX_USER_PRIORITY = 100;

/** Options of {@link LsfAdapter}. */
export interface LsfAdapterOptions extends Pick<BsubOptions, 'maxRunTimeOverhead' | 'maxRunTimeDefault'> {
  /** Submit through `sudo -E -u USER bsub …` (Arvados' `BsubSudoUser`); jobs are then USER's. Default none. */
  sudoUser?: string;
  /** Executables: `bsub`, `bjobs`, `bkill`, `bmod`, `sudo` (default: the names, looked up on PATH). */
  commands?: Partial<Record<'bsub' | 'bjobs' | 'bkill' | 'bmod' | 'sudo', string>>;
  /** Whose jobs the queue query lists; default every user's (`bjobs -u all`), as Arvados' dispatcher lists them. */
  user?: string;
  /**
   * The top of the user priority range (`MAX_USER_PRIORITY`); pending jobs
   * get priorities counting down from it in Arvados' order. 0 turns
   * reprioritising off. Default {@link DEFAULT_MAX_USER_PRIORITY}.
   */
  maxUserPriority?: number;
}

/**
 * The LSF adapter.
 *
 * LSF's `%W` adds `MaxRunTimeOverhead` to the container's max run time and
 * falls back to `MaxRunTimeDefault`: {@link LsfAdapter.maxRunMinutes} gives
 * the core that rule, and the core expands the templates once.
 *
 * @example
 * const adapter = new LsfAdapter({ sudoUser: 'crunch', maxRunTimeOverhead: 300_000 });
 */
export class LsfAdapter implements BatchAdapter {
  readonly name = 'LSF';
  readonly commands: Readonly<Record<string, string>>;
  readonly templates: TemplateRules = LSF_TEMPLATE_RULES;
  /** bsub needs `LSF_ENVDIR` and friends to find the cluster; `LSB_*` tune it. */
  readonly passEnv: readonly string[] = Object.freeze(['LSF_*', 'LSB_*']);
  /** `sudoUser`, when set. */
  readonly jobUser: string | undefined;
  readonly #options: LsfAdapterOptions;
  readonly #user: string;
  readonly #maxUserPriority: number;

  constructor(options: LsfAdapterOptions = {}) {
    const c = options.commands ?? {};
    const commands: Record<string, string> = {
      bsub: c.bsub ?? 'bsub',
      bjobs: c.bjobs ?? 'bjobs',
      bkill: c.bkill ?? 'bkill',
    };
    const max = options.maxUserPriority ?? DEFAULT_MAX_USER_PRIORITY;
    if (!Number.isInteger(max) || max < 0) throw new RangeError(`maxUserPriority must be an integer >= 0, got ${String(max)}`);
    if (max > 0) commands.bmod = c.bmod ?? 'bmod';
    if (options.sudoUser !== undefined) {
      userName('sudoUser', options.sudoUser);
      commands.sudo = c.sudo ?? 'sudo';
    }
    this.commands = Object.freeze(commands);
    this.#options = { ...options };
    this.jobUser = options.sudoUser;
    this.#user = options.user === undefined ? 'all' : userName('user', options.user);
    this.#maxUserPriority = max;
  }

  /** LSF's `%W`: the container's max run time (or `maxRunTimeDefault`) plus `maxRunTimeOverhead`, in minutes; 0 for none. */
  maxRunMinutes(container: Readonly<Container>): number {
    return maxRunMinutes(container, this.#options);
  }

  /** `bsub <templates>` (or `sudo -E -u USER bsub …`) with the script on stdin; the templates as the core expanded them. */
  submit(req: SubmitRequest): CommandSpec {
    const args = [...req.args];
    // The job name is the container UUID whatever the templates say: the
    // queue is looked up by name before any (re)submission.
    const j = args.indexOf('-J');
    if (j < 0 || j === args.length - 1) args.unshift('-J', req.uuid);
    else args[j + 1] = req.uuid;
    if (this.#options.sudoUser) {
      return { command: 'sudo', args: ['-E', '-u', this.#options.sudoUser, this.commands.bsub, ...args], input: req.script };
    }
    return { command: 'bsub', args, input: req.script };
  }

  parseSubmit(result: RunResult): string | undefined {
    return parseBsubJobId(result.stdout);
  }

  /** `bjobs -u USER -o "jobid stat job_name pend_reason job_priority" -json`. */
  queueQuery(): CommandSpec {
    return { command: 'bjobs', args: ['-u', this.#user, '-o', BJOBS_FIELDS, '-json'] };
  }

  parseQueue(stdout: string, onBadLine?: (line: string) => void): QueueJob[] {
    return parseBjobs(stdout, onBadLine);
  }

  /** One `bkill ID…` (SIGINT, then SIGTERM, then SIGKILL after LSF's JOB_TERMINATE_INTERVAL). */
  cancel(jobs: readonly QueueJob[]): CommandSpec[] {
    if (jobs.length === 0) return [];
    return [{ command: 'bkill', args: jobs.map((j) => j.jobId) }];
  }

  cancelGone(result: RunResult): boolean {
    return bkillOnlyGone(result);
  }

  /** `bmod -sp VALUE ID`: the job's user-assigned priority (larger runs first). */
  renice(job: QueueJob, value: number): CommandSpec {
    return { command: 'bmod', args: ['-sp', String(value), job.jobId] };
  }

  /**
   * User priorities counting down from `maxUserPriority` in the wanted order
   * (`spread` apart while the range lasts; jobs past its end share 1).
   * Empty when reprioritising is off.
   */
  planPriorities(jobsInWantedOrder: readonly QueueJob[], spread: number): PriorityChange[] {
    if (this.#maxUserPriority === 0) return [];
    const step = spread >= 1 ? Math.floor(spread) : 1;
    const changes: PriorityChange[] = [];
    jobsInWantedOrder.forEach((job, i) => {
      const value = Math.max(1, this.#maxUserPriority - i * step);
      if (job.priority !== value) changes.push({ job, value });
    });
    return changes;
  }

  /**
   * By LSF's messages (sudo and permission refusals are `configuration`, job
   * limits `backpressure`, an unreachable mbatchd `transient`, anything else
   * `fatal` for a submission). A `bmod -sp` refused for the priority itself
   * (user priorities not enabled in lsb.params, or a value out of range)
   * says to stop reprioritising (`disable: 'renice'`), so it is not retried
   * on every snapshot.
   */
  classify(outcome: RunResult | Error, op: CommandOp): ErrorClass | Verdict {
    const kind = classifyLsf(outcome, op);
    if (op === 'renice' && !(outcome instanceof Error) && outcome.code !== 0 && /priority/i.test(`${outcome.stdout}\n${outcome.stderr}`)) {
      return { kind, disable: 'renice' };
    }
    return kind;
  }

  neverClears(pendingReason: string): boolean {
    return lsfNeverClears(pendingReason);
  }

  /** `bjobs -a … -json ID`: LSF keeps finished jobs for `CLEAN_PERIOD` (an hour by default). */
  async finalState(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal): Promise<TerminalReason | undefined> {
    if (!/^\d+$/.test(job.jobId)) return undefined;
    const result = await exec({ command: 'bjobs', args: ['-a', '-o', BJOBS_FINAL_FIELDS, '-json', job.jobId] }, signal);
    if (result.code !== 0 && result.stdout.trim() === '') return undefined;
    return lsfEnd(result.stdout);
  }

  /** `bjobs -a` says the job is pending, running or suspended. */
  async stillRunning(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal): Promise<boolean> {
    if (!/^\d+$/.test(job.jobId)) return false;
    const result = await exec({ command: 'bjobs', args: ['-a', '-o', 'jobid stat', '-json', job.jobId] }, signal).catch(() => undefined);
    if (!result || result.code !== 0) return false;
    try {
      const doc = JSON.parse(result.stdout) as { RECORDS?: Array<{ JOBID?: unknown; STAT?: unknown }> };
      const rec = doc.RECORDS?.find((r) => String(r.JOBID) === job.jobId);
      return typeof rec?.STAT === 'string' && ['PEND', 'RUN', 'PSUSP', 'USUSP', 'SSUSP', 'PROV', 'WAIT'].includes(rec.STAT);
    } catch {
      return false;
    }
  }
}

/** Options of {@link LsfRunner}: the core's, plus LSF's. */
export interface LsfRunnerOptions extends Omit<BatchRunnerOptions, 'args' | 'gpuArgs'>, Omit<LsfAdapterOptions, 'args' | 'gpuArgs' | 'reserveExtraRam'> {
  /** `BsubArgumentsList`; default Arvados' ({@link DEFAULT_BSUB_ARGUMENTS}). */
  bsubArgs?: readonly string[];
  /** `BsubGPUArguments`; default Arvados' ({@link DEFAULT_BSUB_GPU_ARGUMENTS}). */
  bsubGpuArgs?: readonly string[];
}

/**
 * Runs containers as LSF jobs: the batch core with the {@link LsfAdapter}.
 * See `BatchRunner` for the behaviour.
 *
 * @example
 * ```ts
 * const runner = new LsfRunner({ sudoUser: 'crunch', crunchRunCommand: '/usr/bin/crunch-run' });
 * const dispatcher = new Dispatcher({ runner, pollInterval: 10_000 });
 * await dispatcher.run();
 * ```
 */
export class LsfRunner extends BatchRunner {
  /** @throws TypeError or RangeError for a bad option; `TemplateError` for a bad template. */
  constructor(options: LsfRunnerOptions = {}) {
    const { sudoUser, commands, user, maxUserPriority, maxRunTimeOverhead, maxRunTimeDefault, bsubArgs: args, bsubGpuArgs: gpuArgs, ...core } = options;
    const adapter = new LsfAdapter({ sudoUser, commands, user, maxUserPriority, maxRunTimeOverhead, maxRunTimeDefault });
    super(adapter, { ...core, args, gpuArgs }, { args: DEFAULT_BSUB_ARGUMENTS, gpuArgs: DEFAULT_BSUB_GPU_ARGUMENTS });
  }
}
