// An in-memory Slurm behind a CommandRunner: sbatch, squeue (the adapter's
// format), scancel (by name or by IDs, with --state and --batch --signal),
// scontrol update (by JobId or JobName) and scontrol show job, answering like
// Slurm 22.05. sacct answers that accounting is disabled, as on the real
// single-node setup.
//
// Two ways to use it. By default no job runs: tests move jobs along
// themselves (initialState, onSubmit, onSignal, finish). With `run: true` it
// is a one-node Slurm whose jobs run their scripts on this machine (the
// shared job table, ../batch/fake-job-table.ts): a job starts at once unless
// it has a --begin time (pending, BeginTime, until `scontrol update
// StartTime=now`) or wants more CPUs than the node has (pending,
// PartitionConfig, for ever); scancel signals its processes; an ended job
// leaves the queue and `scontrol show job` tells how it ended.
import { basename } from 'node:path';
import { constants, userInfo } from 'node:os';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/runners/batch/commands.js';
import { FakeJobTable, type TableJob } from '../batch/fake-job-table.js';

export type FakeJobState = 'PENDING' | 'RUNNING' | 'SUSPENDED' | 'COMPLETING';

export interface FakeJob extends TableJob {
  nice: number;
  state: FakeJobState;
  reason: string;
  signals: string[];
}

export interface FakeCall {
  cmd: string;
  args: readonly string[];
  options: RunOptions;
  /** Global order of starts and ends of calls. */
  start: number;
  end?: number;
  result?: RunResult;
}

type Answer = Partial<RunResult>;

/** What a hook returns for one sbatch: whether to queue the job, and what sbatch answers. */
export interface SbatchOutcome {
  submit: boolean;
  result?: Answer;
}

/** Options of a {@link FakeSlurm}. */
export interface FakeSlurmOptions {
  /** Run jobs' scripts on this machine (see the module's comment); default false. */
  run?: boolean;
  /** With `run`: the partitions sbatch accepts; default `debug`. */
  partitions?: readonly string[];
  /** With `run`: the node's CPUs; default 8. */
  cpus?: number;
}

const BASE_PRIORITY = 4294901760;

export class FakeSlurm {
  readonly #table: FakeJobTable<FakeJob>;
  readonly #options: FakeSlurmOptions;
  /** Jobs in the queue, by id. */
  readonly jobs: Map<number, FakeJob>;
  readonly calls: FakeCall[] = [];
  /** Decides each sbatch; default: queue it and answer "Submitted batch job N". */
  sbatchHook: ((args: readonly string[], script: string) => SbatchOutcome | undefined) | undefined;
  /** Called when a job was queued by sbatch. */
  onSubmit: ((job: FakeJob) => void) | undefined;
  /** Called when a running job's batch step gets a signal; default: the job ends (with `run`: its processes get it). */
  onSignal: ((job: FakeJob, signal: string) => void) | undefined;
  /** State of newly queued jobs (without `run`). */
  initialState: FakeJobState = 'RUNNING';
  initialReason = 'None';
  /** squeue (the monitor's) exits 1 while set. */
  squeueFails = false;
  /** Milliseconds each sbatch/scancel/scontrol takes. */
  delayMs = 0;
  /** Largest number of sbatch/scancel/scontrol running at once. */
  maxConcurrent = 0;
  #concurrent = 0;
  #clock = 0;

  constructor(options: FakeSlurmOptions = {}) {
    this.#options = options;
    this.#table = new FakeJobTable<FakeJob>({
      firstId: 1000,
      run: options.run ?? false,
      ...(options.run
        ? {
            onStart: (job: FakeJob) => {
              job.state = 'RUNNING';
              job.reason = 'None';
            },
            onEnd: (job: FakeJob) => {
              this.jobs.delete(job.id);
              this.ended.set(job.id, job.killedBy !== undefined ? 'CANCELLED' : job.exit?.code === 0 ? 'COMPLETED' : 'FAILED');
              if (job.exit) this.#exitCodes.set(job.id, `${job.exit.code ?? 0}:${job.exit.signal ? constants.signals[job.exit.signal] : 0}`);
            },
          }
        : {}),
    });
    this.jobs = this.#table.jobs;
  }

  readonly runner: CommandRunner = async (cmd, args, options = {}) => {
    const call: FakeCall = { cmd: basename(cmd), args: [...args], options, start: ++this.#clock };
    this.calls.push(call);
    const limited = call.cmd !== 'squeue';
    if (limited) {
      this.#concurrent++;
      this.maxConcurrent = Math.max(this.maxConcurrent, this.#concurrent);
    }
    try {
      if (limited && this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      const r = this.command(call.cmd, args, options);
      call.result = r;
      return r;
    } finally {
      if (limited) this.#concurrent--;
      call.end = ++this.#clock;
    }
  };

  /** Adds a job as if someone had submitted it. */
  add(name: string, attrs: Partial<FakeJob> = {}): FakeJob {
    return this.#table.add({
      name,
      user: userInfo().username,
      nice: 10000,
      state: this.initialState,
      reason: this.initialReason,
      args: [],
      script: '',
      env: {},
      signals: [],
      ...attrs,
    });
  }

  /** Removes every job named `name` (it finished, or was killed behind our back). */
  finish(name: string): void {
    for (const [id, job] of this.jobs) if (job.name === name) this.jobs.delete(id);
  }

  byName(name: string): FakeJob[] {
    return [...this.jobs.values()].filter((j) => j.name === name);
  }

  has(name: string): boolean {
    return this.byName(name).length > 0;
  }

  callsOf(cmd: string): FakeCall[] {
    return this.calls.filter((c) => c.cmd === cmd);
  }

  /** The monitor's squeue runs. */
  polls(): FakeCall[] {
    return this.calls.filter((c) => c.cmd === 'squeue');
  }

  /** How ended jobs ended, for `scontrol show job` (job id -> JobState). */
  readonly ended = new Map<number, string>();
  /** With `run`: ended jobs' `ExitCode` (exit status:signal). */
  readonly #exitCodes = new Map<number, string>();

  /** With `run`: kills every job's processes and waits until they are gone. */
  close(): Promise<void> {
    return this.#table.close();
  }

  /** Answers one command at once, as the runner's are answered but not recorded (what a test does by hand). */
  command(cmd: string, args: readonly string[], options: RunOptions = {}): RunResult {
    return { code: 0, signal: null, stdout: '', stderr: '', ...this.#answer(basename(cmd), args, options) };
  }

  #answer(cmd: string, args: readonly string[], options: RunOptions): Answer {
    switch (cmd) {
      case 'sbatch':
        return this.#sbatch(args, options);
      case 'squeue':
        return this.#squeue(args);
      case 'scancel':
        return this.#scancel(args);
      case 'scontrol':
        return this.#scontrol(args);
      case 'sacct':
        return { code: 1, stderr: 'sacct: error: Slurm accounting storage is disabled' };
      default:
        return { code: 127, stderr: `${cmd}: not found` };
    }
  }

  #sbatch(args: readonly string[], options: RunOptions): Answer {
    const value = (option: string): string | undefined => args.find((a) => a.startsWith(`--${option}=`))?.slice(option.length + 3);
    const wrap = value('wrap');
    const script = wrap === undefined ? options.input ?? '' : `#!/bin/sh\n${wrap}\n`;
    const outcome = this.sbatchHook?.(args, script) ?? (this.#options.run ? this.#refusal(value) : undefined) ?? { submit: true };
    let stdout = '';
    if (outcome.submit) {
      const name = value('job-name') ?? 'sbatch';
      const nice = Number(value('nice') ?? 0);
      const job = this.#options.run ? this.#queue(name, nice, args, script, options.env ?? {}, value) : this.add(name, { nice, args: [...args], script, env: { ...options.env } });
      stdout = `Submitted batch job ${job.id}\n`;
      this.onSubmit?.(job);
    }
    return { stdout, ...outcome.result };
  }

  /** sbatch's refusal of an unknown partition, as Slurm words it. */
  #refusal(value: (option: string) => string | undefined): SbatchOutcome | undefined {
    const known = this.#options.partitions ?? ['debug'];
    const bad = (value('partition') ?? '').split(',').find((p) => p !== '' && !known.includes(p));
    if (bad === undefined) return undefined;
    return { submit: false, result: { code: 1, stderr: `sbatch: error: invalid partition specified: ${bad}\nsbatch: error: Batch job submission failed: Invalid partition name specified\n` } };
  }

  #queue(name: string, nice: number, args: readonly string[], script: string, env: NodeJS.ProcessEnv, value: (option: string) => string | undefined): FakeJob {
    const begin = value('begin');
    const held = begin !== undefined && begin !== 'now';
    const tooBig = Number(value('cpus-per-task') ?? 1) > (this.#options.cpus ?? 8);
    const id = this.#table.nextId;
    return this.#table.add({
      name,
      user: userInfo().username,
      nice,
      state: 'PENDING',
      reason: tooBig ? 'PartitionConfig' : held ? 'BeginTime' : 'None',
      args: [...args],
      script,
      // sbatch exports its environment to the job (--export=ALL), plus the job's own variables.
      env: { ...env, SLURM_JOB_ID: String(id), SLURM_JOB_NAME: name },
      signals: [],
      held,
      blocked: tooBig ? 'PartitionConfig' : undefined,
    });
  }

  #squeue(_args: readonly string[]): Answer {
    if (this.squeueFails) return { code: 1, stderr: 'squeue: error: Socket timed out on send/recv operation' };
    const lines = [...this.jobs.values()].map(
      (j) => `${j.id}|${j.name}|${j.nice}|${Math.max(1, BASE_PRIORITY - j.id - j.nice)}|${j.state}|${j.state === 'PENDING' ? '' : 'node1'}|${j.reason}\n`,
    );
    return { stdout: lines.join('') };
  }

  #scancel(args: readonly string[]): Answer {
    const name = args.find((a) => a.startsWith('--name='))?.slice('--name='.length);
    const state = args.find((a) => a.startsWith('--state='))?.slice('--state='.length).toUpperCase();
    const signal = args.find((a) => a.startsWith('--signal='))?.slice('--signal='.length);
    const ids = args.filter((a) => /^\d+$/.test(a)).map(Number);
    const errors: string[] = [];
    let targets: FakeJob[];
    if (name !== undefined) {
      targets = this.byName(name);
    } else {
      targets = [];
      for (const id of ids) {
        const job = this.jobs.get(id);
        if (job) targets.push(job);
        else errors.push(`scancel: error: Kill job error on job id ${id}: Invalid job id specified`);
      }
    }
    for (const job of targets) {
      if (state && job.state !== state) continue;
      if (signal && args.includes('--batch')) {
        job.signals.push(signal);
        if (this.onSignal) this.onSignal(job, signal);
        else if (this.#options.run) this.#table.signal(job, `SIG${signal.replace(/^SIG/, '')}` as NodeJS.Signals);
        else this.jobs.delete(job.id);
      } else if (this.#options.run) {
        // Cancelled: a running job completes once its processes have exited.
        if (job.phase === 'running') job.state = 'COMPLETING';
        this.#table.kill(job, userInfo().username);
      } else {
        this.jobs.delete(job.id);
      }
    }
    return errors.length ? { code: 1, stderr: errors.join('\n') } : {};
  }

  #scontrol(args: readonly string[]): Answer {
    if (args[0] === 'show') {
      const id = Number(args.at(-1));
      const state = this.ended.get(id);
      if (!state) return { code: 1, stderr: 'slurm_load_jobs error: Invalid job id specified' };
      return { stdout: `JobId=${id} JobName=x JobState=${state} Reason=None ExitCode=${this.#exitCodes.get(id) ?? '0:0'} TimeLimit=00:01:00 NodeList=node1\n` };
    }
    const name = args.find((a) => a.startsWith('JobName='))?.slice('JobName='.length);
    const id = args.find((a) => a.startsWith('JobId='))?.slice('JobId='.length);
    const nice = args.find((a) => a.startsWith('Nice='))?.slice('Nice='.length);
    const byId = id === undefined ? undefined : this.jobs.get(Number(id));
    const jobs = name !== undefined ? this.byName(name) : byId ? [byId] : [];
    if (jobs.length === 0) return { code: 1, stderr: `scontrol: error: Invalid job id specified` };
    for (const j of jobs) {
      if (nice !== undefined) j.nice = Number(nice);
      if (args.includes('StartTime=now') && j.held) this.#table.release(j);
    }
    return {};
  }
}
