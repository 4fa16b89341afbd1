/**
 * Slurm as a batch-core adapter (a port of Arvados' crunch-dispatch-slurm):
 * `sbatch` with the script on stdin, one `squeue` of our own jobs, `scancel`
 * by job id (SIGTERM to the batch step), `scontrol update … Nice=` for
 * renicing, and `sacct` (or `scontrol show job` within MinJobAge) for why a
 * job ended.
 *
 * @module
 */
import { isContainerUuid } from '../../../uuid.js';
import type { BatchAdapter, CommandSpec, Exec, JobState, QueueJob, RunResult, SubmitRequest, TemplateRules, TerminalKind, TerminalReason } from '../adapter.js';
import { BATCH_RUNNER_DEFAULTS, type BatchRunnerOptions } from '../options.js';
import { BatchRunner } from '../runner.js';
import { classifySlurmFailure } from './errors.js';
import { STANDARD_PLACEHOLDERS } from '../template.js';

/** The nice value every job is submitted with; renicing starts from here. */
export const INITIAL_NICE = 10000;

/** Arvados' default `SbatchArgumentsList`. */
export const DEFAULT_SBATCH_ARGUMENTS: readonly string[] = Object.freeze(['--job-name=%U', '--mem=%M', '--cpus-per-task=%C', '--tmp=%T', '--partition=%P']);

/** Arvados' default `SbatchGPUArgumentsList`, added when GPUs are requested. */
export const DEFAULT_SBATCH_GPU_ARGUMENTS: readonly string[] = Object.freeze(['--gpus=%G']);

/** The squeue output format: id, name, nice, priority, state, nodes, reason (`|`-separated: nodes and reasons may be empty). */
export const SQUEUE_FORMAT = '%i|%j|%y|%Q|%T|%N|%r';

/** `%P` and `%W` drop their argument when empty: "--partition=" or "--time=" would mean something else to sbatch. */
export const SLURM_TEMPLATE_RULES: TemplateRules = Object.freeze({
  placeholders: STANDARD_PLACEHOLDERS,
  dropWhenEmpty: Object.freeze(['%P', '%W']),
  dropMode: 'argument' as const,
});

/**
 * Pending reasons that mean the job can never start as submitted: it asks
 * for more than any node or partition offers, or breaks a per-job limit.
 * (Slurm accepts a job that wants more CPUs than any node has, and leaves it
 * pending with reason PartitionConfig forever.)
 */
const NEVER_CLEARS =
  /^(?:PartitionConfig|PartitionNodeLimit|PartitionTimeLimit|BadConstraints|InvalidAccount|InvalidQOS|DependencyNeverSatisfied|PartitionDown|PartitionInactive)$|^(?:QOS|Assoc)\w*PerJob\w*Limit$|^QOSMin\w*NotSatisfied$/;

// What scancel says, with exit status 1, about ids whose jobs have ended
// since the snapshot: expected, and harmless for the other ids.
const ENDED_JOB = /Invalid job id specified|already completing or completed|Job has already finished/i;

/** Paths of the Slurm commands; each defaults to its bare name, found on `PATH`. */
export interface SlurmCommands {
  sbatch?: string;
  squeue?: string;
  scancel?: string;
  scontrol?: string;
  sacct?: string;
}

/** Options of the Slurm adapter. */
export interface SlurmAdapterOptions {
  /** Where the Slurm commands are. */
  commands?: SlurmCommands;
  /**
   * Whose jobs squeue lists. Default every user's, as Arvados' dispatcher
   * lists them: a job submitted by another dispatcher (a Go one before a
   * switch-over, or one running as another user) is followed, not
   * resubmitted, when its container is locked by our token.
   */
  squeueUser?: string;
  /**
   * Run `squeue --all`, which also lists jobs in hidden partitions and
   * partitions this user may not use (Go's crunch-dispatch-slurm does).
   * Default false.
   */
  squeueAll?: boolean;
  /**
   * Absolute directory for each job's output (`--output=<dir>/crunch-run-%x-%j.out`,
   * named by container UUID and job id) and working directory (`--chdir`).
   * It must exist on the compute nodes. `null` adds neither. Default `/tmp`.
   */
  jobOutputDir?: string | null;
}

/** Options of {@link SlurmRunner}: the core's, the adapter's, and the Slurm names of the templates. */
export interface SlurmRunnerOptions extends Omit<BatchRunnerOptions, 'args' | 'gpuArgs'>, SlurmAdapterOptions {
  /**
   * sbatch argument templates (`SbatchArgumentsList`), with the `%U %C %M %T
   * %P %G %W %I %%` substitutions. Default {@link DEFAULT_SBATCH_ARGUMENTS}.
   */
  sbatchArgs?: readonly string[];
  /** Templates added when the container wants GPUs (`SbatchGPUArgumentsList`). Default `--gpus=%G`. */
  sbatchGpuArgs?: readonly string[];
}

/** Documented defaults of {@link SlurmRunnerOptions}. */
export const SLURM_RUNNER_DEFAULTS = Object.freeze({ ...BATCH_RUNNER_DEFAULTS, jobOutputDir: '/tmp' });

const INTEGER = /^-?\d+$/;

/**
 * Parses `squeue --noheader --format='%i|%j|%y|%Q|%T|%N|%r'` output. Lines
 * whose name is not a container UUID are skipped; malformed ones go to
 * `onBadLine`.
 */
export function parseSqueue(stdout: string, onBadLine?: (line: string) => void): QueueJob[] {
  const jobs: QueueJob[] = [];
  for (const raw of stdout.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const [jobId, name, nice, priority, state, nodes, ...reason] = line.split('|');
    if (!isContainerUuid(name)) continue;
    if (reason.length === 0 || !/^\d+(?:_\d+)?$/.test(jobId) || !INTEGER.test(nice) || !INTEGER.test(priority) || !/^[A-Z_]+$/.test(state)) {
      onBadLine?.(raw);
      continue;
    }
    const r = reason.join('|');
    jobs.push({
      jobId,
      name,
      nice: Number(nice),
      priority: Number(priority),
      rawState: state,
      state: jobState(state),
      pendingReason: state === 'PENDING' && r !== 'None' ? r.replace(/^\(|\)$/g, '') : '',
      ...(nodes && nodes !== '(null)' ? { nodes } : {}),
    });
  }
  return jobs;
}

function jobState(state: string): JobState {
  if (state === 'PENDING') return 'pending';
  if (state === 'RUNNING' || state === 'CONFIGURING') return 'running';
  return 'other';
}

/** The job id in sbatch's "Submitted batch job 123" (also with `--parsable`). */
export function parseSbatchJobId(stdout: string): string | undefined {
  const m = /^(?:Submitted batch job )?(\d+)(?:;\S+)?\s*$/m.exec(stdout.trim());
  return m ? m[1] : undefined;
}

const UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Bytes of a Slurm memory figure (`4096M`, `4Gn`, `4300K`, `4G`); default unit MiB. */
export function slurmBytes(text: string | undefined): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)[nc]?$/.exec((text ?? '').trim());
  return m ? Number(m[1]) * UNITS[m[2] || 'M'] : undefined;
}

/** `4.1 GiB`, or `128 MiB` below 1 GiB. */
function size(bytes: number): string {
  return bytes >= 2 ** 30 ? `${Number((bytes / 2 ** 30).toFixed(1))} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

const KINDS: Record<string, TerminalKind> = {
  OUT_OF_MEMORY: 'OUT_OF_MEMORY',
  TIMEOUT: 'TIMEOUT',
  DEADLINE: 'TIMEOUT',
  NODE_FAIL: 'NODE_FAIL',
  BOOT_FAIL: 'NODE_FAIL',
  PREEMPTED: 'PREEMPTED',
  CANCELLED: 'CANCELLED',
  FAILED: 'FAILED',
  COMPLETED: 'COMPLETED',
};

/** What accounting knows of a job, from sacct or scontrol. */
export interface SlurmJobEnd {
  jobId: string;
  /** e.g. `TIMEOUT`, `CANCELLED by 0`. */
  state: string;
  /** `exit:signal`, e.g. `0:15`. */
  exitCode?: string;
  /** Bytes requested, if known. */
  reqMem?: number;
  /** Largest RSS of any step, bytes, if known. */
  maxRss?: number;
  timeLimit?: string;
  nodes?: string;
}

/** Maps what accounting knows of a job to a {@link TerminalReason}; undefined for a state that is not terminal. */
export function terminalReason(end: SlurmJobEnd): TerminalReason | undefined {
  const word = end.state.split(/\s+/)[0] ?? '';
  const kind = KINDS[word];
  if (!kind) return undefined;
  const [code, signal] = (end.exitCode ?? '').split(':').map(Number);
  const exitCode = Number.isInteger(code) ? code : undefined;
  const job = `Slurm job ${end.jobId}`;
  let detail: string;
  switch (kind) {
    case 'OUT_OF_MEMORY': {
      const parts = [end.reqMem ? `requested ${size(end.reqMem)}` : '', end.maxRss ? `max RSS ${size(end.maxRss)}` : ''].filter(Boolean);
      detail = `${job} ran out of memory${parts.length ? ` (${parts.join(', ')})` : ''}`;
      break;
    }
    case 'TIMEOUT':
      detail = `${job} reached its time limit${end.timeLimit ? ` (${end.timeLimit})` : ''}`;
      break;
    case 'NODE_FAIL':
      detail = `${job} ended because its node failed${end.nodes ? ` (${end.nodes})` : ''}`;
      break;
    case 'PREEMPTED':
      detail = `${job} was preempted`;
      break;
    case 'CANCELLED':
      detail = `${job} was cancelled outside the dispatcher${/by \d+/.test(end.state) ? ` (${end.state.toLowerCase().replace(/^cancelled /, '')})` : ''}`;
      break;
    case 'FAILED':
      detail = `${job} failed with exit code ${exitCode ?? '?'}${signal ? ` (signal ${signal})` : ''}`;
      break;
    default:
      detail = `${job} completed with exit code ${exitCode ?? '?'}`;
  }
  return { kind, ...(exitCode !== undefined ? { exitCode } : {}), detail };
}

/** Parses `sacct --noheader --parsable2 --format=JobID,State,ExitCode,ReqMem,MaxRSS,Timelimit,NodeList -j <id>`. */
export function parseSacct(stdout: string, jobId: string): SlurmJobEnd | undefined {
  let end: SlurmJobEnd | undefined;
  let maxRss = 0;
  for (const line of stdout.split('\n')) {
    const [id, state, exitCode, reqMem, rss, timeLimit, nodes] = line.trim().split('|');
    if (!id || state === undefined) continue;
    const bytes = slurmBytes(rss) ?? 0;
    if (bytes > maxRss) maxRss = bytes;
    if (id === jobId) end = { jobId, state, exitCode, reqMem: slurmBytes(reqMem), timeLimit, nodes };
  }
  return end && { ...end, ...(maxRss > 0 ? { maxRss } : {}) };
}

/** Parses `scontrol show job -o <id>` (one line of `Key=Value`). */
export function parseScontrolJob(stdout: string, jobId: string): SlurmJobEnd | undefined {
  const fields = new Map<string, string>();
  for (const m of stdout.matchAll(/(?:^|\s)([A-Za-z:/]+)=(\S*)/g)) if (!fields.has(m[1])) fields.set(m[1], m[2]);
  if (fields.get('JobId') !== jobId || !fields.get('JobState')) return undefined;
  const mem = /(?:^|,)mem=([^,]+)/.exec(fields.get('TRES') ?? '')?.[1] ?? fields.get('MinMemoryNode');
  return {
    jobId,
    state: fields.get('JobState') as string,
    exitCode: fields.get('ExitCode'),
    reqMem: slurmBytes(mem),
    timeLimit: fields.get('TimeLimit'),
    nodes: fields.get('NodeList'),
  };
}

/** The Slurm adapter. */
export class SlurmAdapter implements BatchAdapter {
  readonly name = 'Slurm';
  readonly commands: Readonly<Required<SlurmCommands>>;
  readonly templates = SLURM_TEMPLATE_RULES;
  readonly passEnv = Object.freeze(['SLURM_CONF', 'SBATCH_*']);
  readonly #squeueArgs: readonly string[];
  readonly #outputArgs: readonly string[];

  /** @throws TypeError for a bad option. */
  constructor(options: SlurmAdapterOptions = {}) {
    const cmd = (name: keyof SlurmCommands): string => {
      const v = options.commands?.[name] ?? name;
      if (typeof v !== 'string' || v === '') throw new TypeError(`commands.${name} must be a non-empty string`);
      return v;
    };
    this.commands = Object.freeze({ sbatch: cmd('sbatch'), squeue: cmd('squeue'), scancel: cmd('scancel'), scontrol: cmd('scontrol'), sacct: cmd('sacct') });
    this.#squeueArgs = Object.freeze([
      ...(options.squeueAll ? ['--all'] : []),
      ...(options.squeueUser === undefined ? [] : [`--user=${options.squeueUser}`]),
      '--noheader',
      `--format=${SQUEUE_FORMAT}`,
    ]);
    const dir = options.jobOutputDir === undefined ? SLURM_RUNNER_DEFAULTS.jobOutputDir : options.jobOutputDir;
    if (dir !== null && (typeof dir !== 'string' || !dir.startsWith('/') || dir.includes('\\'))) {
      throw new TypeError(`jobOutputDir must be an absolute path without backslashes, or null; got ${JSON.stringify(dir)}`);
    }
    const trimmed = dir?.replace(/(?<=.)\/+$/, '');
    // sbatch expands %-patterns in --output (not in --chdir): keep the directory's own % literal.
    this.#outputArgs =
      trimmed === undefined || trimmed === null ? [] : [`--chdir=${trimmed}`, `--output=${trimmed === '/' ? '' : trimmed.replaceAll('%', '%%')}/crunch-run-%x-%j.out`];
  }

  /** The squeue arguments in use. */
  get squeueArgs(): readonly string[] {
    return this.#squeueArgs;
  }

  /**
   * `sbatch --nice=10000 --no-requeue [--chdir --output] <templates>`, and
   * `--job-name=<uuid>` if the templates did not set it: the core finds jobs
   * by name. `--no-requeue` because a requeued job would run the container a
   * second time behind Arvados' back.
   */
  submit(req: SubmitRequest): CommandSpec {
    const args = [`--nice=${INITIAL_NICE}`, '--no-requeue', ...this.#outputArgs, ...req.args];
    if (!req.args.includes(`--job-name=${req.uuid}`)) args.push(`--job-name=${req.uuid}`);
    return { command: 'sbatch', args, input: req.script };
  }

  parseSubmit(result: RunResult): string | undefined {
    return parseSbatchJobId(result.stdout);
  }

  queueQuery(): CommandSpec {
    return { command: 'squeue', args: this.#squeueArgs };
  }

  parseQueue(stdout: string, onBadLine?: (line: string) => void): QueueJob[] {
    return parseSqueue(stdout, onBadLine);
  }

  /**
   * Pending jobs removed; running and suspended ones get SIGTERM on the batch
   * step (crunch-run), never SIGKILL, so crunch-run can stop its container
   * (Arvados #12891). scancel 22.05 takes any number of ids.
   */
  cancel(jobs: readonly QueueJob[]): CommandSpec[] {
    const pending = jobs.filter((j) => j.state === 'pending').map((j) => j.jobId);
    const started = jobs.filter((j) => j.state !== 'pending').map((j) => j.jobId);
    const specs: CommandSpec[] = [];
    if (pending.length) specs.push({ command: 'scancel', args: ['--state=pending', ...pending] });
    if (started.length) {
      specs.push({ command: 'scancel', args: ['--batch', '--signal=TERM', '--state=running', ...started] });
      if (jobs.some((j) => j.rawState === 'SUSPENDED')) specs.push({ command: 'scancel', args: ['--batch', '--signal=TERM', '--state=suspended', ...started] });
    }
    return specs;
  }

  cancelGone(result: RunResult): boolean {
    const lines = result.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
    return lines.length > 0 && lines.every((l) => ENDED_JOB.test(l));
  }

  renice(job: QueueJob, value: number): CommandSpec {
    return { command: 'scontrol', args: ['update', `JobId=${job.jobId}`, `Nice=${value}`] };
  }

  classify(outcome: RunResult | Error, op: Parameters<BatchAdapter['classify']>[1]): ReturnType<BatchAdapter['classify']> {
    return classifySlurmFailure(outcome, op);
  }

  neverClears(pendingReason: string): boolean {
    return NEVER_CLEARS.test(pendingReason);
  }

  /** sacct; where accounting is off or the record is not there yet, `scontrol show job` (within MinJobAge). */
  async finalState(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal): Promise<TerminalReason | undefined> {
    if (!/^\d+(?:_\d+)?$/.test(job.jobId)) return undefined;
    const sacct = await exec(
      { command: 'sacct', args: ['--noheader', '--parsable2', '--format=JobID,State,ExitCode,ReqMem,MaxRSS,Timelimit,NodeList', `--jobs=${job.jobId}`] },
      signal,
    ).catch(() => undefined);
    const fromSacct = sacct?.code === 0 ? parseSacct(sacct.stdout, job.jobId) : undefined;
    const viaSacct = fromSacct && terminalReason(fromSacct);
    if (viaSacct) return viaSacct;
    const show = await exec({ command: 'scontrol', args: ['show', 'job', '--oneliner', job.jobId] }, signal);
    const fromShow = show.code === 0 ? parseScontrolJob(show.stdout, job.jobId) : undefined;
    return fromShow && terminalReason(fromShow);
  }

  /** `sacct` (else `scontrol show job`) says the job is running, pending, suspended or completing. */
  async stillRunning(job: { readonly jobId: string; readonly name: string }, exec: Exec, signal: AbortSignal): Promise<boolean> {
    if (!/^\d+(?:_\d+)?$/.test(job.jobId)) return false;
    const sacct = await exec({ command: 'sacct', args: ['--noheader', '--parsable2', '--format=JobID,State', `--jobs=${job.jobId}`] }, signal).catch(() => undefined);
    const fromSacct = sacct?.code === 0 ? parseSacct(sacct.stdout, job.jobId) : undefined;
    if (fromSacct) return ALIVE_STATES.has(fromSacct.state.split(/\s+/)[0] ?? '');
    const show = await exec({ command: 'scontrol', args: ['show', 'job', '--oneliner', job.jobId] }, signal).catch(() => undefined);
    const fromShow = show?.code === 0 ? parseScontrolJob(show.stdout, job.jobId) : undefined;
    return fromShow !== undefined && ALIVE_STATES.has(fromShow.state.split(/\s+/)[0] ?? '');
  }
}

/** Slurm job states of a job that is not over. */
const ALIVE_STATES = new Set(['PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING', 'SUSPENDED', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'STAGE_OUT', 'SIGNALING', 'STOPPED']);

/**
 * Runs containers as Slurm batch jobs: the batch core with the
 * {@link SlurmAdapter}. See `BatchRunner` for the behaviour.
 *
 * @example
 * ```ts
 * const runner = new SlurmRunner({ crunchRunCommand: '/usr/bin/crunch-run', queueInterval: 10_000 });
 * const dispatcher = new Dispatcher({ runner, pollInterval: 10_000 });
 * runner.on('warning', (m) => console.warn(m));
 * await dispatcher.run();
 * ```
 */
export class SlurmRunner extends BatchRunner {
  /** @throws TypeError or RangeError for a bad option; `TemplateError` for a bad template. */
  constructor(options: SlurmRunnerOptions = {}) {
    const { commands, squeueUser, squeueAll, jobOutputDir, sbatchArgs, sbatchGpuArgs, ...core } = options;
    super(new SlurmAdapter({ commands, squeueUser, squeueAll, jobOutputDir }), { ...core, args: sbatchArgs, gpuArgs: sbatchGpuArgs }, {
      args: DEFAULT_SBATCH_ARGUMENTS,
      gpuArgs: DEFAULT_SBATCH_GPU_ARGUMENTS,
    });
  }
}
