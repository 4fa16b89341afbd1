/**
 * OpenPBS / PBS Professional as a batch system for the core: `qsub -N <uuid>
 * -r n` with the script on stdin, `qstat -f -F json` for the queue, `qdel`
 * until gone, `qalter -p` to keep pending jobs in Arvados' order, and
 * `qstat -x -f -F json <id>` (job history) for why a job ended. Output
 * formats are OpenPBS 23.06's.
 *
 * @module
 */
import type { BatchAdapter, CommandOp, CommandSpec, ErrorClass, Exec, PriorityChange, QueueJob, RunResult, SubmitRequest, TemplateRules, TerminalReason } from '../adapter.js';
import { STANDARD_PLACEHOLDERS } from '../template.js';
import { classifyPbs, parseQsubJobId, qdelOnlyGone } from './output.js';
import { parseQstatJson, pbsEnd, pbsJobState, pbsNeverRuns, pbsPendingReason } from './qstat.js';

/**
 * Default qsub argument templates: output and error joined into /tmp of the
 * execution host, the container's partitions as the queue, its CPUs and RAM
 * as one chunk, and its max run time as `walltime` (minutes:seconds). The
 * queue and walltime pairs are left out when empty.
 */
export const DEFAULT_PBS_QSUB_ARGUMENTS: readonly string[] = Object.freeze([
  '-j', 'oe',
  '-o', '/tmp/',
  '-q', '%P',
  '-l', 'select=1:ncpus=%C:mem=%Mmb',
  '-l', 'walltime=%W:00',
]);

/** Default GPU templates: none (GPUs are a chunk resource, `select=1:ncpus=%C:mem=%Mmb:ngpus=%G`, set in the main templates). */
export const DEFAULT_PBS_QSUB_GPU_ARGUMENTS: readonly string[] = Object.freeze([]);

/** PBS's templates: every standard placeholder; `-q %P` and `-l walltime=%W:00` go whole when empty. */
export const PBS_TEMPLATE_RULES: TemplateRules = Object.freeze({
  placeholders: STANDARD_PLACEHOLDERS,
  dropWhenEmpty: Object.freeze(['%W', '%P']),
  dropMode: 'pair' as const,
});

/** qalter -p's range. */
export const PBS_PRIORITY_RANGE = Object.freeze({ min: -1024, max: 1023 });
/** Added to `Priority` for {@link QueueJob.priority}, which the core wants positive (0 means held). */
const SHIFT = 1025;

/** Options of {@link PbsAdapter}. */
export interface PbsAdapterOptions {
  /** Executables: `qsub`, `qstat`, `qdel`, `qalter` (default: the names, looked up on PATH). */
  commands?: Partial<Record<'qsub' | 'qstat' | 'qdel' | 'qalter', string>>;
  /** Keep pending jobs in Arvados' order with `qalter -p`. Default true. */
  reprioritise?: boolean;
}

const JOB_ID = /^\d+(?:\[\d*\])?\.[\w.-]+$/;

/**
 * The PBS adapter. Pure: it builds commands and reads output; it keeps no
 * state about the scheduler.
 *
 * @example
 * const adapter = new PbsAdapter({ commands: { qsub: '/opt/pbs/bin/qsub' } });
 */
export class PbsAdapter implements BatchAdapter {
  readonly name = 'PBS';
  readonly commands: Readonly<Record<string, string>>;
  readonly templates: TemplateRules = PBS_TEMPLATE_RULES;
  /** qsub finds its server through `PBS_CONF_FILE`, `PBS_SERVER` and the other `PBS_*` settings. */
  readonly passEnv: readonly string[] = Object.freeze(['PBS_*']);
  readonly #reprioritise: boolean;

  constructor(options: PbsAdapterOptions = {}) {
    const c = options.commands ?? {};
    const cmd = (name: 'qsub' | 'qstat' | 'qdel' | 'qalter'): string => {
      const v = c[name] ?? name;
      if (typeof v !== 'string' || v === '') throw new TypeError(`commands.${name} must be a non-empty string`);
      return v;
    };
    this.commands = Object.freeze({ qsub: cmd('qsub'), qstat: cmd('qstat'), qdel: cmd('qdel'), qalter: cmd('qalter') });
    this.#reprioritise = options.reprioritise ?? true;
  }

  /**
   * `qsub -N <uuid> -r n <templates>` with the script on stdin. `-r n`: a
   * rerun job would run the container a second time behind Arvados' back.
   * No `-V`: `qstat -f` shows a job's exported environment to every user;
   * the credentials reach crunch-run through the job's secrets file.
   */
  submit(req: SubmitRequest): CommandSpec {
    return { command: 'qsub', args: ['-N', req.uuid, '-r', 'n', ...req.args], input: req.script };
  }

  parseSubmit(result: RunResult): string | undefined {
    return parseQsubJobId(result.stdout);
  }

  /** `qstat -f -F json`: every user's jobs (finished ones only with `-x`, which this leaves out). */
  queueQuery(): CommandSpec {
    return { command: 'qstat', args: ['-f', '-F', 'json'] };
  }

  parseQueue(stdout: string, onBadLine?: (line: string) => void): QueueJob[] {
    const out: QueueJob[] = [];
    for (const job of parseQstatJson(stdout, onBadLine)) {
      const state = pbsJobState(job.state);
      if (state === undefined) continue;
      const nodes = state === 'running' && job.execHost ? [...new Set(job.execHost.split('+').map((h) => h.replace(/\/.*$/, '')))].join(',') : '';
      out.push({
        jobId: job.id,
        name: job.name,
        state,
        rawState: job.state,
        // Shifted into 1…2048: the core leaves jobs of priority 0 alone.
        priority: job.priority + SHIFT,
        nice: 0,
        pendingReason: state === 'pending' ? pbsPendingReason(job.comment) : '',
        ...(nodes ? { nodes } : {}),
      });
    }
    return out;
  }

  /** `qdel ID…`: a running job gets SIGTERM, then SIGKILL after the queue's `kill_delay`. */
  cancel(jobs: readonly QueueJob[]): CommandSpec[] {
    const ids = jobs.map((j) => j.jobId).filter((id) => JOB_ID.test(id));
    return ids.length === 0 ? [] : [{ command: 'qdel', args: ids }];
  }

  cancelGone(result: RunResult): boolean {
    return qdelOnlyGone(result);
  }

  /** `qalter -p VALUE ID` (−1024…1023, larger runs first). */
  renice(job: QueueJob, value: number): CommandSpec {
    const p = Math.min(PBS_PRIORITY_RANGE.max, Math.max(PBS_PRIORITY_RANGE.min, Math.round(value)));
    return { command: 'qalter', args: ['-p', String(p), job.jobId] };
  }

  /** Priorities counting down from 1023 in the wanted order, `spread` apart; jobs past −1024 share it. */
  planPriorities(jobsInWantedOrder: readonly QueueJob[], spread: number): PriorityChange[] {
    if (!this.#reprioritise) return [];
    const step = spread >= 1 ? Math.floor(spread) : 1;
    const changes: PriorityChange[] = [];
    jobsInWantedOrder.forEach((job, i) => {
      const value = Math.max(PBS_PRIORITY_RANGE.min, PBS_PRIORITY_RANGE.max - i * step);
      if (job.priority - SHIFT !== value) changes.push({ job, value });
    });
    return changes;
  }

  classify(outcome: RunResult | Error, op: CommandOp): ErrorClass {
    return classifyPbs(outcome, op);
  }

  /** The scheduler says "Can Never Run: …" (a request no node can meet). */
  neverClears(pendingReason: string): boolean {
    return pbsNeverRuns(pendingReason);
  }

  /** `qstat -x -f -F json ID` (job history, kept for the server's `job_history_duration`): `Exit_status`. */
  async finalState(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal): Promise<TerminalReason | undefined> {
    const found = await this.#history(job, exec, signal);
    return found && pbsEnd(found);
  }

  /** `qstat -x` still shows the job as not finished. */
  async stillRunning(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal): Promise<boolean> {
    const found = await this.#history(job, exec, signal).catch(() => undefined);
    return found !== undefined && pbsJobState(found.state) !== undefined;
  }

  async #history(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal) {
    if (!JOB_ID.test(job.jobId)) return undefined;
    const result = await exec({ command: 'qstat', args: ['-x', '-f', '-F', 'json', job.jobId] }, signal);
    if (result.code !== 0) return undefined;
    try {
      return parseQstatJson(result.stdout).find((j) => j.id === job.jobId && j.name === job.name);
    } catch {
      return undefined;
    }
  }
}
