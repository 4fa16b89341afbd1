// An in-memory Slurm behind a CommandRunner: sbatch, squeue (the adapter's
// format), scancel (by name or by IDs, with --state and --batch --signal),
// scontrol update (by JobId or JobName) and scontrol show job, answering like
// Slurm 22.05. sacct answers that accounting is disabled, as on the real
// single-node setup.
import { basename } from 'node:path';
import type { CommandRunner, RunOptions, RunResult } from '../../../src/runners/batch/commands.js';

export type FakeJobState = 'PENDING' | 'RUNNING' | 'SUSPENDED' | 'COMPLETING';

export interface FakeJob {
  id: number;
  name: string;
  nice: number;
  state: FakeJobState;
  reason: string;
  args: readonly string[];
  script: string;
  env: NodeJS.ProcessEnv;
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

const BASE_PRIORITY = 4294901760;

export class FakeSlurm {
  readonly jobs = new Map<number, FakeJob>();
  readonly calls: FakeCall[] = [];
  /** Decides each sbatch; default: queue it and answer "Submitted batch job N". */
  sbatchHook: ((args: readonly string[], script: string) => SbatchOutcome | undefined) | undefined;
  /** Called when a job was queued by sbatch. */
  onSubmit: ((job: FakeJob) => void) | undefined;
  /** Called when a running job's batch step gets a signal; default: the job ends. */
  onSignal: ((job: FakeJob, signal: string) => void) | undefined;
  /** State of newly queued jobs. */
  initialState: FakeJobState = 'RUNNING';
  initialReason = 'None';
  /** squeue (the monitor's) exits 1 while set. */
  squeueFails = false;
  /** Milliseconds each sbatch/scancel/scontrol takes. */
  delayMs = 0;
  /** Largest number of sbatch/scancel/scontrol running at once. */
  maxConcurrent = 0;
  #concurrent = 0;
  #nextId = 1000;
  #clock = 0;

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
      const r = { code: 0, signal: null, stdout: '', stderr: '', ...this.#answer(call.cmd, args, options) };
      call.result = r;
      return r;
    } finally {
      if (limited) this.#concurrent--;
      call.end = ++this.#clock;
    }
  };

  /** Adds a job as if someone had submitted it. */
  add(name: string, attrs: Partial<FakeJob> = {}): FakeJob {
    const job: FakeJob = {
      id: this.#nextId++,
      name,
      nice: 10000,
      state: this.initialState,
      reason: this.initialReason,
      args: [],
      script: '',
      env: {},
      signals: [],
      ...attrs,
    };
    this.jobs.set(job.id, job);
    return job;
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
    const script = options.input ?? '';
    const outcome = this.sbatchHook?.(args, script) ?? { submit: true };
    let stdout = '';
    if (outcome.submit) {
      const name = args.find((a) => a.startsWith('--job-name='))?.slice('--job-name='.length) ?? 'sbatch';
      const nice = Number(args.find((a) => a.startsWith('--nice='))?.slice('--nice='.length) ?? 0);
      const job = this.add(name, { nice, args: [...args], script, env: { ...options.env } });
      stdout = `Submitted batch job ${job.id}\n`;
      this.onSubmit?.(job);
    }
    return { stdout, ...outcome.result };
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
        else this.jobs.delete(job.id);
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
      return { stdout: `JobId=${id} JobName=x JobState=${state} Reason=None ExitCode=0:0 TimeLimit=00:01:00 NodeList=node1\n` };
    }
    const name = args.find((a) => a.startsWith('JobName='))?.slice('JobName='.length);
    const id = args.find((a) => a.startsWith('JobId='))?.slice('JobId='.length);
    const nice = Number(args.find((a) => a.startsWith('Nice='))?.slice('Nice='.length));
    const byId = id === undefined ? undefined : this.jobs.get(Number(id));
    const jobs = name !== undefined ? this.byName(name) : byId ? [byId] : [];
    if (jobs.length === 0) return { code: 1, stderr: `scontrol: error: Invalid job id specified` };
    for (const j of jobs) j.nice = nice;
    return {};
  }
}
