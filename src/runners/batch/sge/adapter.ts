/**
 * Grid Engine (Son of Grid Engine, Univa/Altair GE) as a batch system for
 * the core: `qsub -terse -N <uuid>` with the script on stdin, `qstat -u
 * <user> -xml -pri` for our jobs, `qdel` until gone, `qalter -p` to keep
 * pending jobs in Arvados' order, and `qacct -j <id>` for why a job ended.
 *
 * Resource requests are site-specific in Grid Engine (`-l h_vmem=…`,
 * `-pe smp N` only where such a parallel environment exists), so they come
 * from the argument templates, with the same `%` substitutions as the others.
 *
 * @module
 */
import { realClock, type Clock } from '../../../util/sleep.js';
import type { BatchAdapter, CommandOp, CommandSpec, ErrorClass, Exec, PriorityChange, PriorityLimits, QueueJob, RunResult, SubmitRequest, TemplateRules, TerminalReason, Verdict } from '../adapter.js';
import type { BatchRunnerOptions } from '../options.js';
import { planNice } from '../priority.js';
import { BatchRunner } from '../runner.js';
import { parseQacct, sgeEnd } from './qacct.js';
import { RAISE_REFUSED, classifySge, parseQsubJobId, qdelOnlyGone } from './output.js';
import { containerOfJob, sgeJobName } from './name.js';
import { isPendingState, isRunningState, parseQstatXml, pendingReason } from './qstat.js';
import { userName } from '../user.js';

/**
 * Default qsub argument templates: output files in /tmp of the execution
 * host, named by job id (Grid Engine expands `$JOB_ID` itself; no shell sees
 * these), the container's partitions as the queue list, and its max run time
 * as the hard wall-clock limit `h_rt`. Both are left out when empty.
 */
export const DEFAULT_QSUB_ARGUMENTS: readonly string[] = Object.freeze([
  '-o', '/tmp/crunch-run.$JOB_ID.out',
  '-e', '/tmp/crunch-run.$JOB_ID.err',
  '-q', '%P',
  '-l', 'h_rt=0:%W:0',
]);

/** Default templates added when a container wants GPUs: none (GPU resources are named per site). */
export const DEFAULT_QSUB_GPU_ARGUMENTS: readonly string[] = Object.freeze([]);

/** Grid Engine's templates: `-q %P`, `-l h_rt=0:%W:0` pairs are dropped whole when empty. */
export const SGE_TEMPLATE_RULES: TemplateRules = Object.freeze({
  placeholders: Object.freeze(['%C', '%G', '%I', '%M', '%T', '%U', '%W', '%P']),
  dropWhenEmpty: Object.freeze(['%W', '%P']),
  dropMode: 'pair',
});

/** qalter's range of `-p` values. */
const MIN_PRIORITY = -1023;
/** Added to `-p` for {@link QueueJob.priority}, which must be positive. */
const PRIORITY_SHIFT = 1024;

/** Options of {@link SgeAdapter}. */
export interface SgeAdapterOptions {
  /** Executables: `qsub`, `qstat`, `qdel`, `qalter`, `qacct` (default: the names, looked up on PATH). */
  commands?: Partial<Record<'qsub' | 'qstat' | 'qdel' | 'qalter' | 'qacct', string>>;
  /** Whose jobs qstat lists; default every user's (`qstat -u '*'`). */
  user?: string;
  /** How often to ask qacct for a record not written yet (Grid Engine flushes accounting every few seconds). Default 3. */
  accountingAttempts?: number;
  /** Milliseconds between those attempts. Default 2 000. */
  accountingDelay?: number;
}

/**
 * The Grid Engine adapter.
 *
 * Priorities: qstat's `-pri` value (`-p`, -1023..1024, larger first) plus
 * 1024 is the job's priority and its negation the "nice" the core's plan
 * adjusts, so the most wanted job sits at `-p 0`, the default. Only operators and managers may
 * raise a job's priority; after the first such refusal this adapter only
 * ever lowers priorities, which keeps the order as well as it can be kept.
 *
 * @example
 * const adapter = new SgeAdapter({ user: 'crunch' });
 */
export class SgeAdapter implements BatchAdapter {
  readonly name = 'Grid Engine';
  readonly commands: Readonly<Record<string, string>>;
  readonly templates: TemplateRules = SGE_TEMPLATE_RULES;
  /** qsub finds its cell through `SGE_ROOT`, `SGE_CELL` and `SGE_QMASTER_PORT`. */
  readonly passEnv: readonly string[] = Object.freeze(['SGE_*']);
  readonly #user: string;
  readonly #attempts: number;
  readonly #delay: number;

  constructor(options: SgeAdapterOptions = {}) {
    const c = options.commands ?? {};
    this.commands = Object.freeze({
      qsub: c.qsub ?? 'qsub',
      qstat: c.qstat ?? 'qstat',
      qdel: c.qdel ?? 'qdel',
      qalter: c.qalter ?? 'qalter',
      qacct: c.qacct ?? 'qacct',
    });
    this.#user = options.user === undefined ? '*' : userName('user', options.user);
    this.#attempts = Math.max(1, Math.floor(options.accountingAttempts ?? 3));
    this.#delay = Math.max(0, options.accountingDelay ?? 2_000);
  }

  /**
   * `qsub -terse -N <uuid> -S /bin/sh -r n <templates>` with the script on
   * stdin. `-S /bin/sh`: queues often start jobs with csh, which ignores the
   * script's `#!`. `-r n`: a re-run job would run the container a second
   * time behind Arvados' back. No `-V`: `qstat -j` shows the exported
   * environment to every user; the credentials reach crunch-run through the
   * job's secrets file, which the script reads.
   */
  submit(req: SubmitRequest): CommandSpec {
    return {
      command: 'qsub',
      args: ['-terse', '-N', sgeJobName(req.uuid), '-S', '/bin/sh', '-r', 'n', ...req.args],
      input: req.script,
    };
  }

  parseSubmit(result: RunResult): string | undefined {
    return parseQsubJobId(result.stdout);
  }

  /** `qstat -u '*' -xml -pri`: every user's jobs (or `user`'s), with their `-p` priority. */
  queueQuery(): CommandSpec {
    return { command: 'qstat', args: ['-u', this.#user, '-xml', '-pri'] };
  }

  parseQueue(stdout: string, onBadLine?: (line: string) => void): QueueJob[] {
    return parseQstatXml(stdout, onBadLine).map((job) => {
      const p = job.priority ?? 0;
      const running = isRunningState(job.state);
      return {
        jobId: job.id,
        name: job.name,
        state: running ? 'running' : isPendingState(job.state) ? 'pending' : 'other',
        rawState: job.state,
        // Shifted into 1..2048: the core leaves jobs with a priority of 0 or
        // less alone (Slurm's held jobs), and `priority + nice` stays constant.
        priority: p + PRIORITY_SHIFT,
        nice: 0 - p,
        pendingReason: running ? '' : pendingReason(job)?.reason ?? '',
        ...(running && job.queue ? { nodes: job.queue.replace(/^[^@]*@/, '') } : {}),
      };
    });
  }

  /**
   * `qdel ID…`. A running job gets the queue's `terminate_method` (SIGKILL
   * unless the site sets SIGTERM, which lets crunch-run stop its container;
   * see the README).
   */
  cancel(jobs: readonly QueueJob[]): CommandSpec[] {
    if (jobs.length === 0) return [];
    return [{ command: 'qdel', args: jobs.map((j) => j.jobId) }];
  }

  cancelGone(result: RunResult): boolean {
    return qdelOnlyGone(result);
  }

  /** `qalter -p <-value> ID` (value is the core's nice: 0 is the top). */
  renice(job: QueueJob, value: number): CommandSpec {
    const p = Math.max(MIN_PRIORITY, -Math.round(value));
    return { command: 'qalter', args: ['-p', String(p), job.jobId] };
  }

  /** The core's nice plan, clamped to qalter's range, without raises once they were refused. */
  planPriorities(jobsInWantedOrder: readonly QueueJob[], spread: number, limits: PriorityLimits = { mayRaise: true }): PriorityChange[] {
    return planNice(jobsInWantedOrder, spread)
      .map((c) => ({ job: c.job, value: Math.min(-MIN_PRIORITY, c.value) }))
      .filter((c) => c.value !== c.job.nice && (limits.mayRaise || c.value > c.job.nice));
  }

  /** Grid Engine's messages (see `classifySge`); a refused raise says to only ever lower priorities (`disable: 'raise'`). */
  classify(outcome: RunResult | Error, op: CommandOp): ErrorClass | Verdict {
    const kind = classifySge(outcome, op);
    if (op === 'renice' && !(outcome instanceof Error) && RAISE_REFUSED.test(`${outcome.stdout}\n${outcome.stderr}`)) return { kind, disable: 'raise' };
    return kind;
  }

  /** A job in Grid Engine's error state (`Eqw`) stays there until an operator clears it. */
  neverClears(reason: string): boolean {
    return /error state/.test(reason);
  }

  /**
   * `qacct -j <id>`, asked a few times: the record is written when the job
   * ends and reaches the accounting file at the next flush. A job deleted
   * while pending never gets one.
   */
  async finalState(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal, clock: Clock = realClock): Promise<TerminalReason | undefined> {
    if (!/^\d+$/.test(job.jobId)) return undefined;
    for (let attempt = 1; attempt <= this.#attempts; attempt++) {
      const result = await exec({ command: 'qacct', args: ['-j', job.jobId] }, signal);
      const acct = result.code === 0 ? parseQacct(result.stdout) : undefined;
      if (acct && containerOfJob(acct.jobname) === containerOfJob(job.name)) {
        const end = sgeEnd(acct);
        return { kind: end.kind, ...(end.exitCode === undefined ? {} : { exitCode: end.exitCode }), detail: end.message };
      }
      // A record of another job with the same number (ids restart at 1 after
      // a reinstall) says nothing about ours.
      if (acct) return undefined;
      if (attempt < this.#attempts) await clock.sleep(this.#delay, signal);
    }
    return undefined;
  }

  /** `qstat -j` still knows the job (qacct has a record only once it ended). */
  async stillRunning(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal): Promise<boolean> {
    if (!/^\d+$/.test(job.jobId)) return false;
    const result = await exec({ command: 'qstat', args: ['-j', job.jobId] }, signal).catch(() => undefined);
    return result?.code === 0 && new RegExp(`^job_number:\\s+${job.jobId}\\s*$`, 'm').test(result.stdout);
  }
}

/** Options of {@link SgeRunner}: the core's, plus Grid Engine's. */
export interface SgeRunnerOptions extends Omit<BatchRunnerOptions, 'args' | 'gpuArgs'>, SgeAdapterOptions {
  /** qsub argument templates; default {@link DEFAULT_QSUB_ARGUMENTS}. */
  qsubArgs?: readonly string[];
  /** Templates added for containers that want GPUs; default none. */
  qsubGpuArgs?: readonly string[];
}

/**
 * Runs containers as Grid Engine jobs: the batch core with the
 * {@link SgeAdapter}. See `BatchRunner` for the behaviour.
 *
 * @example
 * ```ts
 * const runner = new SgeRunner({ qsubArgs: [...DEFAULT_QSUB_ARGUMENTS, '-l', 'h_vmem=%MM', '-pe', 'smp', '%C'] });
 * const dispatcher = new Dispatcher({ runner, pollInterval: 10_000 });
 * await dispatcher.run();
 * ```
 */
export class SgeRunner extends BatchRunner {
  /** @throws TypeError or RangeError for a bad option; `TemplateError` for a bad template. */
  constructor(options: SgeRunnerOptions = {}) {
    const { commands, user, accountingAttempts, accountingDelay, qsubArgs, qsubGpuArgs, ...core } = options;
    super(new SgeAdapter({ commands, user, accountingAttempts, accountingDelay }), { ...core, args: qsubArgs, gpuArgs: qsubGpuArgs }, {
      args: DEFAULT_QSUB_ARGUMENTS,
      gpuArgs: DEFAULT_QSUB_GPU_ARGUMENTS,
    });
  }
}
