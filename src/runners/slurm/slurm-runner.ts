/**
 * The Slurm runner: runs each container as a Slurm batch job whose script
 * `exec`s crunch-run (a port of Arvados' crunch-dispatch-slurm).
 *
 * @module
 */
import { EventEmitter, once } from 'node:events';
import { userInfo } from 'node:os';
import type { Dispatcher, RunContainer } from '../../dispatcher/dispatcher.js';
import type { ContainerUpdates } from '../../dispatcher/updates.js';
import { isApiStatus } from '../../client/errors.js';
import { logger } from '../../log.js';
import type { ApiClientAuthorization, Container } from '../../types.js';
import { assertContainerUuid } from '../../uuid.js';
import type { CommandRunner, SlurmCli } from './commands.js';
import { limited, run, slurmCli, spawnCommand } from './commands.js';
import { SubmitGate } from './gate.js';
import { SlurmJob, type JobContext, type LostJob } from './job.js';
import { resolveSlurmOptions, type ResolvedSlurmOptions, type SlurmCommands, type SlurmRunnerOptions } from './options.js';
import { Renicer } from './renicer.js';
import { ScancelBatcher } from './scancel.js';
import { SqueueMonitor, type SqueueSnapshot } from './squeue.js';

const log = logger('slurm');

/**
 * Pending reasons that mean the job can never start as submitted: it asks
 * for more than any node or partition offers, or breaks a per-job limit.
 * (Slurm accepts a job that wants more CPUs than any node has, and leaves it
 * pending with reason PartitionConfig forever.)
 */
const CANNOT_START =
  /^(?:PartitionConfig|PartitionNodeLimit|PartitionTimeLimit|BadConstraints|InvalidAccount|InvalidQOS|DependencyNeverSatisfied)$|^(?:QOS|Assoc)\w*PerJob\w*Limit$|^QOSMin\w*NotSatisfied$/;

/** Attempts to hand an orphan job's container to the dispatcher before giving up. */
const ORPHAN_ATTEMPTS = 5;
/** Orphans handed over at once (each is a GET). */
const ORPHAN_CONCURRENCY = 8;

/** Events of {@link SlurmRunner}. */
export interface SlurmRunnerEvents {
  /** Something failed that the runner retries or worked around, or that needs an administrator. */
  warning: [message: string];
  /** sbatch accepted a container's job (`jobId` from its output, if it could be read). */
  submitted: [uuid: string, jobId: number | undefined];
  /** A job left the queue without being cancelled by us, and its container was cancelled or unlocked. */
  lost: [info: LostJob];
  /** Jobs named like containers of this cluster were found at startup and handed to the dispatcher. */
  orphans: [uuids: string[]];
}

/** Counters for status displays. */
export interface SlurmRunnerStatus {
  /** Containers being followed. */
  containers: number;
  /** Our jobs in the last squeue snapshot. */
  queued: number;
  /** Submissions are paused because Slurm refused one for a submit limit. */
  submitPaused: boolean;
  /** Whether the last squeue run succeeded. */
  squeueHealthy: boolean;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? '');
  }
}

/** `runner` with command names replaced by the configured paths. */
function withPaths(runner: CommandRunner, paths: Required<SlurmCommands>): CommandRunner {
  return (cmd, args, options) => runner(Object.hasOwn(paths, cmd) ? paths[cmd as keyof SlurmCommands] : cmd, args, options);
}

/**
 * Runs containers as Slurm batch jobs. Give its {@link runContainer} to a
 * {@link Dispatcher} and {@link attach} it to that dispatcher before
 * `run()`, so that it can look for orphan jobs at startup:
 *
 * - A Locked container that has no job in the queue is submitted with
 *   sbatch (job name = container UUID, `--nice=10000 --no-requeue`, the
 *   argument templates), its credentials in sbatch's environment. A fresh
 *   squeue snapshot is checked before every attempt, so a submission that
 *   failed on our side but reached Slurm is never duplicated. Transient
 *   failures are retried with backoff; submit-limit refusals pause all
 *   submissions; other failures reject, and the dispatcher logs them and
 *   unlocks the container.
 * - A container already in the queue (after a restart) is followed, not
 *   submitted again.
 * - Priority 0, or the container leaving Locked/Running, cancels the job
 *   (`scancel`: pending jobs removed, running ones get SIGTERM on the batch
 *   step, never SIGKILL), repeated on each snapshot until it is gone.
 * - A job that leaves the queue on its own is declared lost after the grace
 *   period: its container is cancelled if Running, unlocked if Locked.
 * - Pending jobs are reniced to follow Arvados priorities.
 * - When the dispatcher stops, jobs are left alone, so that a restarted
 *   dispatcher picks them up again.
 *
 * One squeue poller serves all containers; at most 3 sbatch, scancel and
 * scontrol processes run at once in the whole process.
 *
 * @example
 * ```ts
 * const runner = new SlurmRunner({ crunchRunCommand: '/usr/bin/crunch-run', queueInterval: 10_000 });
 * const dispatcher = new Dispatcher({ runContainer: runner.runContainer, pollInterval: 10_000 });
 * runner.attach(dispatcher);
 * runner.on('warning', (m) => console.warn(m));
 * await dispatcher.run(); // the runner closes itself when the dispatcher stops
 * await runner.close();
 * ```
 */
export class SlurmRunner extends EventEmitter<SlurmRunnerEvents> {
  /** The options in effect, defaults filled in. */
  readonly options: ResolvedSlurmOptions;
  /** The {@link RunContainer} to give the Dispatcher (bound to this runner). */
  readonly runContainer: RunContainer;
  readonly #monitor: SqueueMonitor;
  readonly #gate: SubmitGate;
  readonly #scancel: ScancelBatcher;
  readonly #renicer: Renicer;
  readonly #cli: SlurmCli;
  readonly #closed = new AbortController();
  readonly #ctx: JobContext;
  readonly #jobs = new Map<string, Promise<void>>();
  readonly #stuckWarned = new Set<string>();
  /** Orphan job names still to hand over, with the attempts made. */
  readonly #orphans = new Map<string, number>();
  #handingOver = false;
  #dispatcher: Dispatcher | undefined;
  #closing: Promise<void> | undefined;
  #squeueHealthy = true;
  readonly #onStopping = (): void => void this.close();
  readonly #onSnapshot = (s: SqueueSnapshot): void => this.#snapshot(s);
  readonly #onPollError = (err: Error): void => {
    if (this.#squeueHealthy) this.#warn(`squeue failed (the queue is unknown until it works again): ${err.message}`);
    else log('squeue failed again: %s', err.message);
    this.#squeueHealthy = false;
  };

  /** @throws TypeError or RangeError for a bad option. */
  constructor(options: SlurmRunnerOptions = {}) {
    super();
    const o = resolveSlurmOptions(options);
    this.options = Object.freeze(o);
    const user = o.squeueUser ?? currentUser();
    const spawner = withPaths(o.runner ?? spawnCommand, o.commands);
    // sbatch, scancel and scontrol share the process-wide limit of 3 (Arvados #14110).
    const limitedRunner = o.runner ? limited(spawner) : withPaths(run, o.commands);
    this.#cli = slurmCli(limitedRunner);
    this.#monitor = new SqueueMonitor({
      intervalMs: o.queueInterval,
      runner: o.runner,
      command: o.commands.squeue,
      user,
      timeoutMs: Math.max(2 * o.queueInterval, o.commandTimeout),
    });
    this.#gate = new SubmitGate(o.submitRetry.maxDelay);
    this.#scancel = new ScancelBatcher({
      runner: limitedRunner,
      squeueRunner: spawner,
      user,
      timeoutMs: o.commandTimeout,
      onWarning: (m) => this.#warn(m),
    });
    this.#renicer = new Renicer({ runner: limitedRunner, spread: o.prioritySpread, timeoutMs: o.commandTimeout });
    this.#gate.on('paused', () =>
      this.#warn('Slurm refused a submission for a submit limit; pausing submissions until one of our jobs leaves the queue'),
    );
    this.#gate.on('probing', (why) => log('submissions paused; probing (%s)', why));
    this.#gate.on('resumed', () => log('submissions resumed'));
    this.#ctx = {
      options: this.options,
      monitor: this.#monitor,
      gate: this.#gate,
      scancel: this.#scancel,
      renicer: this.#renicer,
      cli: this.#cli,
      closed: this.#closed.signal,
      warn: (m) => this.#warn(m),
      submitted: (uuid, jobId) => this.emit('submitted', uuid, jobId),
      lost: (info) => this.emit('lost', info),
    };
    this.runContainer = (d, container, updates) => this.#runContainer(d, container, updates);
  }

  /** Current counters. */
  get status(): SlurmRunnerStatus {
    return {
      containers: this.#jobs.size,
      queued: this.#monitor.latest?.jobs.size ?? 0,
      submitPaused: this.#gate.state !== 'open',
      squeueHealthy: this.#squeueHealthy,
    };
  }

  /** The squeue poller (for status displays; its snapshots are this runner's view of the queue). */
  get monitor(): SqueueMonitor {
    return this.#monitor;
  }

  /**
   * Ties the runner to `dispatcher`: starts squeue polling, hands jobs named
   * like containers of this cluster to `dispatcher.trackContainer()` once it
   * has identified itself (so orphans of finished containers get cancelled),
   * and closes the runner when the dispatcher stops. `runContainer` attaches
   * on its first call if this was not done, but then orphans are only looked
   * for once a container arrives. Idempotent for the same dispatcher.
   *
   * @throws Error if attached to another dispatcher, or closed.
   */
  attach(dispatcher: Dispatcher): this {
    if (this.#dispatcher === dispatcher) return this;
    if (this.#dispatcher) throw new Error('this SlurmRunner is attached to another Dispatcher');
    if (this.#closed.signal.aborted) throw new Error('this SlurmRunner is closed');
    this.#dispatcher = dispatcher;
    dispatcher.once('stopping', this.#onStopping);
    this.#monitor.on('snapshot', this.#onSnapshot);
    this.#monitor.on('pollError', this.#onPollError);
    this.#monitor.start();
    void this.#findOrphans(dispatcher);
    return this;
  }

  /**
   * Stops squeue polling and lets every container's runner return *without*
   * cancelling its job (the jobs stay in Slurm for the next dispatcher to
   * adopt). Resolves once commands in progress have finished. Idempotent.
   * Called by itself when the attached dispatcher stops; call it yourself
   * only after the dispatcher has stopped, since the dispatcher releases the
   * containers whose runners return while it is still running.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    log('closing');
    this.#closed.abort(new Error('SlurmRunner closed'));
    this.#dispatcher?.off('stopping', this.#onStopping);
    this.#gate.close();
    await this.#monitor.stop();
    this.#monitor.off('snapshot', this.#onSnapshot);
    this.#monitor.off('pollError', this.#onPollError);
    await Promise.allSettled([...this.#jobs.values()]);
    await Promise.all([this.#scancel.close(), this.#renicer.idle()]);
  }

  async #runContainer(d: Dispatcher, container: Container, updates: ContainerUpdates): Promise<void> {
    assertContainerUuid(container?.uuid);
    if (this.#closed.signal.aborted) throw new Error('this SlurmRunner is closed');
    this.attach(d);
    if (this.#jobs.has(container.uuid)) throw new Error(`container ${container.uuid} is already being run by this SlurmRunner`);
    const job = new SlurmJob(this.#ctx, d, container, updates).run();
    this.#jobs.set(container.uuid, job);
    try {
      await job;
    } finally {
      this.#jobs.delete(container.uuid);
    }
  }

  #warn(message: string): void {
    log(message);
    this.emit('warning', message);
  }

  // ---- after each squeue snapshot --------------------------------------------

  #snapshot(snap: SqueueSnapshot): void {
    if (!this.#squeueHealthy) log('squeue works again');
    this.#squeueHealthy = true;
    this.#gate.observe(snap.jobs.keys());
    this.#renicer.onSnapshot(snap);
    this.#warnStuck(snap);
    if (this.#orphans.size > 0) void this.#handOverOrphans(snap);
  }

  /** Once per job: a pending reason that means it cannot start as submitted. */
  #warnStuck(snap: SqueueSnapshot): void {
    for (const name of this.#stuckWarned) if (!snap.jobs.has(name)) this.#stuckWarned.delete(name);
    for (const job of snap.jobs.values()) {
      if (job.state !== 'PENDING' || !CANNOT_START.test(job.reason) || this.#stuckWarned.has(job.name)) continue;
      if (!this.#jobs.has(job.name)) continue;
      this.#stuckWarned.add(job.name);
      const text =
        `The Slurm job for container ${job.name} is pending with reason ${job.reason}: ` +
        'it cannot start as submitted (it asks for more than any node or partition offers, or breaks a per-job limit), ' +
        'and waits until the container is cancelled or the Slurm configuration changes.';
      this.#warn(text);
      void this.#dispatcher?.client
        .createLog({ object_uuid: job.name, event_type: 'dispatch', properties: { text } }, { signal: this.#closed.signal })
        .catch((err: unknown) => log('could not log the stuck job of %s: %s', job.name, describe(err)));
    }
  }

  // ---- orphans --------------------------------------------------------------

  /**
   * At startup, every job in the queue named like a container of this
   * cluster is handed to the dispatcher, which gives it a runner: a live
   * container's runner follows the job; a finished or requeued container's
   * runner sees its updates already ended and cancels the job.
   */
  async #findOrphans(d: Dispatcher): Promise<void> {
    const signal = this.#closed.signal;
    try {
      const auth: ApiClientAuthorization = d.auth ?? ((await once(d, 'identified', { signal })) as [ApiClientAuthorization])[0];
      const prefix = `${auth.uuid.slice(0, 5)}-dz642-`;
      const snap = await this.#monitor.nextSnapshot(signal);
      const names = [...snap.jobs.keys()].filter((n) => n.startsWith(prefix));
      log('startup: %d job(s) of cluster %s in the queue', names.length, prefix.slice(0, 5));
      if (names.length === 0) return;
      this.emit('orphans', names);
      for (const n of names) this.#orphans.set(n, 0);
      await this.#handOverOrphans(snap);
    } catch (err) {
      if (!signal.aborted) this.#warn(`looking for orphan Slurm jobs failed: ${describe(err)}`);
    }
  }

  async #handOverOrphans(snap: SqueueSnapshot): Promise<void> {
    const d = this.#dispatcher;
    if (this.#handingOver || !d) return;
    this.#handingOver = true;
    try {
      // A job that left the queue meanwhile needs nothing.
      for (const n of this.#orphans.keys()) if (!snap.jobs.has(n)) this.#orphans.delete(n);
      const todo = [...this.#orphans.keys()];
      const worker = async (): Promise<void> => {
        for (let name = todo.shift(); name !== undefined && !this.#closed.signal.aborted; name = todo.shift()) {
          await this.#handOver(d, name);
        }
      };
      await Promise.all(Array.from({ length: Math.min(ORPHAN_CONCURRENCY, todo.length) }, worker));
    } finally {
      this.#handingOver = false;
    }
  }

  async #handOver(d: Dispatcher, name: string): Promise<void> {
    const attempts = (this.#orphans.get(name) ?? 0) + 1;
    try {
      await d.trackContainer(name);
      this.#orphans.delete(name);
    } catch (err) {
      if (this.#closed.signal.aborted) return;
      if (isApiStatus(err, 404)) {
        this.#orphans.delete(name);
        this.#warn(`Slurm job ${name} is named like a container of this cluster, but there is no such container; leaving it alone`);
      } else if (attempts >= ORPHAN_ATTEMPTS) {
        this.#orphans.delete(name);
        this.#warn(`giving up on Slurm job ${name} found at startup: ${describe(err)}`);
      } else {
        this.#orphans.set(name, attempts);
        log('could not track %s (attempt %d, will retry): %s', name, attempts, describe(err));
      }
    }
  }
}
