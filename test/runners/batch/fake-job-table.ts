/**
 * The job table behind the in-process stand-ins of Slurm, LSF and Grid
 * Engine (fake-slurm.ts, fake-lsf.ts, fake-sge.ts): jobs by id, each job's
 * script run as a real child process on this machine (the behaviour list
 * needs crunch-run to run), holds that keep a job pending, and kills. Each
 * stand-in keeps its own scheduler's fields on the jobs and prints its own
 * output formats; what a job does is decided here, once.
 *
 * A job's script runs with /bin/sh in its own process group, in the
 * environment the stand-in gives it, with no input or output: a kill
 * signals the whole group, as schedulers signal a job's processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';

/** Where a job is: waiting to start, its script running, or over (it ran, or was deleted). */
export type JobPhase = 'pending' | 'running' | 'ended';

/** How a job's script ended: its exit status, or the signal that ended it. */
export interface JobExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** What every stand-in's job holds; a stand-in's own job type adds its scheduler's fields. */
export interface TableJob {
  readonly id: number;
  readonly name: string;
  /** The submitting user, as the scheduler shows it. */
  user: string;
  readonly args: readonly string[];
  readonly script: string;
  /** The script's whole environment. */
  readonly env: NodeJS.ProcessEnv;
  phase: JobPhase;
  /** Waits until released (a begin time, a user hold). */
  held: boolean;
  /** Why the job can never start (an error state), or undefined. */
  blocked: string | undefined;
  /** Who deleted it, once deleted. */
  killedBy: string | undefined;
  /** How its script ended, once it ran and ended. */
  exit: JobExit | undefined;
  readonly submittedAt: number;
  startedAt: number | undefined;
  endedAt: number | undefined;
}

/** A new job: what the stand-in knows at submission, plus its own fields. */
export type NewJob<J extends TableJob> = Omit<J, keyof TableJob> &
  Pick<TableJob, 'name' | 'user' | 'args' | 'script' | 'env'> &
  Partial<Pick<TableJob, 'held' | 'blocked'>>;

/** Options of a {@link FakeJobTable}. */
export interface FakeJobTableOptions<J extends TableJob> {
  /** The first job id; default 100. */
  firstId?: number;
  /** Run jobs' scripts (default true); false: jobs only change phase when a test says so. */
  run?: boolean;
  /** The scripts' working directory; default `/tmp`. */
  cwd?: string;
  /** Called when a job's script has started. */
  onStart?: (job: J) => void;
  /** Called when a job has ended (its script exited, or it was deleted before it started). */
  onEnd?: (job: J) => void;
}

/** Jobs by id, run as child processes. See the module's comment. */
export class FakeJobTable<J extends TableJob> {
  /** Every job the table knows, ended ones too (until their stand-in forgets them). */
  readonly jobs = new Map<number, J>();
  readonly #options: FakeJobTableOptions<J>;
  readonly #children = new Map<number, ChildProcess>();
  #nextId: number;
  #paused = false;

  constructor(options: FakeJobTableOptions<J> = {}) {
    this.#options = options;
    this.#nextId = options.firstId ?? 100;
  }

  /** The id the next job gets (for the job's own environment variables). */
  get nextId(): number {
    return this.#nextId;
  }

  /** While true, no job starts (the cluster is full); setting it false starts the waiting ones. */
  get paused(): boolean {
    return this.#paused;
  }

  set paused(value: boolean) {
    this.#paused = value;
    if (!value) for (const job of this.jobs.values()) this.#maybeStart(job);
  }

  /** Queues a job, and starts it unless it is held, blocked or the table paused. */
  add(fields: NewJob<J>): J {
    const job = {
      held: false,
      blocked: undefined,
      ...fields,
      id: this.#nextId++,
      phase: 'pending',
      killedBy: undefined,
      exit: undefined,
      submittedAt: Date.now(),
      startedAt: undefined,
      endedAt: undefined,
    } as J;
    this.jobs.set(job.id, job);
    this.#maybeStart(job);
    return job;
  }

  /** Jobs not ended yet, named `name` if given, in id order. */
  live(name?: string): J[] {
    return [...this.jobs.values()].filter((j) => j.phase !== 'ended' && (name === undefined || j.name === name));
  }

  /** Ends a held job's wait. */
  release(job: J): void {
    job.held = false;
    this.#maybeStart(job);
  }

  /** Sends `signal` to a running job's processes; false if it is not running. */
  signal(job: J, signal: NodeJS.Signals): boolean {
    if (job.phase !== 'running' || !this.#children.has(job.id)) return false;
    try {
      process.kill(-(this.#children.get(job.id)?.pid ?? 0), signal);
    } catch {
      // Exited since: the exit event ends it.
    }
    return true;
  }

  /**
   * Deletes a job as `by`: a pending one ends at once (it never ran); a
   * running one gets `signal` and ends when its script exits. False if
   * it had ended already.
   */
  kill(job: J, by: string, signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (job.phase === 'ended') return false;
    job.killedBy ??= by;
    if (job.phase === 'pending') this.#end(job, undefined);
    else this.signal(job, signal);
    return true;
  }

  /** Kills every job's processes (SIGKILL) and waits until they are gone. */
  async close(): Promise<void> {
    const exits = [...this.#children.entries()].map(
      ([id, child]) =>
        new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          if (child.exitCode !== null || child.signalCode !== null) resolve();
          const job = this.jobs.get(id);
          if (job) this.signal(job, 'SIGKILL');
        }),
    );
    for (const job of this.jobs.values()) if (job.phase === 'pending') this.kill(job, 'cleanup');
    await Promise.all(exits);
  }

  #maybeStart(job: J): void {
    if (job.phase !== 'pending' || job.held || job.blocked !== undefined || this.#paused) return;
    job.phase = 'running';
    job.startedAt = Date.now();
    if (this.#options.run ?? true) {
      const child = spawn('/bin/sh', ['-c', job.script, `job-${job.id}`], { detached: true, stdio: 'ignore', env: job.env, cwd: this.#options.cwd ?? '/tmp' });
      this.#children.set(job.id, child);
      child.on('error', () => undefined);
      child.on('exit', (code, signal) => {
        this.#children.delete(job.id);
        this.#end(job, { code, signal });
      });
    }
    this.#options.onStart?.(job);
  }

  #end(job: J, exit: JobExit | undefined): void {
    job.phase = 'ended';
    job.exit = exit;
    job.endedAt = Date.now();
    this.#options.onEnd?.(job);
  }
}

/** The exit status a shell would report for `exit`: the code, or 128 + the signal's number. */
export function exitStatus(exit: JobExit): number {
  if (exit.code !== null) return exit.code;
  return 128 + (exit.signal ? constants.signals[exit.signal] : 0);
}
