/**
 * The batch core: runs each container as a job of a batch system (Slurm,
 * LSF, Grid Engine…) through a {@link BatchAdapter}, with every
 * scheduler-neutral rule in one place (a port and generalisation of Arvados'
 * crunch-dispatch-slurm and arvados-dispatch-lsf).
 *
 * @module
 */
import { EventEmitter, once, setMaxListeners } from 'node:events';
import { isApiStatus } from '../../client/errors.js';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import type { InstanceTypeView } from '../../dispatcher/options.js';
import { RunnerConfigError, type ReleaseAction, type ReleaseOptions, type RunContainer, type Runner, type RunnerEventSource, type RunnerStatus } from '../../dispatcher/runner.js';
import type { ContainerUpdates } from '../../dispatcher/updates.js';
import { logger } from '../../log.js';
import type { ApiClientAuthorization, Container } from '../../types.js';
import { describeError } from '../../util/errors.js';
import { assertContainerUuid } from '../../uuid.js';
import type { BatchAdapter, QueueJob, RunResult, TerminalKind } from './adapter.js';
import { Canceller } from './canceller.js';
import { classifyOutcome, Executor, type CommandRecord } from './exec.js';
import { SubmitGate } from './gate.js';
import { BatchJob } from './job.js';
import type { JobContext, LostJob } from './job-context.js';
import { JobSecrets } from './job-secrets.js';
import { SharedVerdicts } from './echoes.js';
import { CommandLimiter } from './limiter.js';
import { QueueMonitor, type QueueSnapshot } from './monitor.js';
import { resolveBatchOptions, type BatchRunnerOptions, type ResolvedBatchOptions } from './options.js';
import { Renicer } from './renicer.js';
import { validateTemplates } from './template.js';
import { fittingInstanceTypes } from '../instance-types.js';

const log = logger('batch');

/** Attempts to hand an orphan job's container to the dispatcher before giving up. */
const ORPHAN_ATTEMPTS = 5;
/** Orphans handed over at once (each is a GET). */
const ORPHAN_CONCURRENCY = 8;

/** Events of {@link BatchRunner} (names are stable: metrics consume them). */
export interface BatchRunnerEvents {
  /** Something failed that the runner retries or worked around, or that needs an administrator. */
  warning: [message: string];
  /** A scheduler command ended (queue queries included). */
  command: [record: CommandRecord];
  /**
   * A submission ended: `ok` (accepted, `jobId` if it could be read),
   * `error` (refused or failed), `duplicate` (a submission that seemed to
   * fail was found in the queue, so it was not repeated).
   */
  submitted: [uuid: string, result: 'ok' | 'error' | 'duplicate', jobId?: string];
  /** A job left the queue on its own and its container was released (`none`: it had finished by itself). */
  vanished: [uuid: string, resolution: ReleaseAction];
  /** A job left the queue for good; `kind` from the scheduler's accounting, `UNKNOWN` without it. */
  finished: [uuid: string, kind: TerminalKind | 'UNKNOWN'];
  /** Details of a vanished job whose container was released (not for `none`; see {@link LostJob}). */
  lost: [info: LostJob];
  /** Jobs named like containers of this cluster were found at startup and handed to the dispatcher. */
  orphans: [uuids: string[]];
}

/** Counters for status displays and metrics (a {@link RunnerStatus} with the scheduler's fields). */
export interface BatchRunnerStatus extends RunnerStatus {
  /** The scheduler's name, e.g. `Slurm`. */
  scheduler: string;
  /** Containers being followed. */
  containers: number;
  /** Our jobs in the last queue snapshot (pending, running or other). */
  inQueue: number;
  /** Of those, pending. */
  pending: number;
  /** The scheduler's reasons for those pending, with how many give each. */
  pendingReasons: Readonly<Record<string, number>>;
  /** Of those, running. */
  running: number;
  /** Containers in a submission step now. */
  submitting: number;
  /** Submissions are paused because the scheduler refused one for a submit limit or quota. */
  atQuota: boolean;
  /** Whether the last queue query succeeded. */
  queueHealthy: boolean;
  /** Milliseconds since the last successful queue query (undefined before the first). */
  queueAgeMs: number | undefined;
  /** The queue poller's interval now (it slows down while nothing changes). */
  queueIntervalMs: number;
  /** Scheduler commands running / waiting for the limiter. */
  commandsRunning: number;
  commandsWaiting: number;
}

/**
 * Runs containers as batch jobs. Give it to a Dispatcher as `new
 * Dispatcher({ runner })`: the Dispatcher is its one owner, which attaches it
 * before the first poll and closes it once its containers have settled
 * (see "Runner lifecycle" in docs/design.md):
 *
 * - A Locked container that has no job in the queue is submitted (job name
 *   = container UUID, the argument templates), its credentials in the submit
 *   command's environment. A fresh queue snapshot is checked before every
 *   attempt, so a submission that failed on our side but reached the
 *   scheduler is never duplicated. Transient failures are retried with
 *   backoff; back-pressure refusals pause all submissions (`atQuota`);
 *   a fatal refusal releases the container with the reason; a configuration
 *   failure rejects with `RunnerConfigError`.
 * - A container already in the queue (after a restart) is followed, not
 *   submitted again; at startup, jobs of this cluster are handed to the
 *   dispatcher, which cancels those of finished containers.
 * - Priority 0, or the container leaving Locked/Running, cancels the job,
 *   repeated on each snapshot until it is gone (batched across containers).
 * - A job that leaves the queue on its own is declared lost after the grace;
 *   the scheduler's accounting says why, and the container is released with
 *   that reason (the dispatcher reads a fresh record first).
 * - A job pending for a reason that can never clear is cancelled with the
 *   reason after a grace period.
 * - Pending jobs are reniced to follow Arvados priorities.
 * - When the dispatcher stops, jobs are left alone, for the next dispatcher.
 *
 * One poller queries the queue; every other command goes through one limiter
 * (concurrency and a token-bucket rate).
 */
export class BatchRunner extends EventEmitter<BatchRunnerEvents> implements Runner {
  /** The batch system. */
  readonly adapter: BatchAdapter;
  /** The options in effect, defaults filled in. */
  readonly options: ResolvedBatchOptions;
  /** The {@link RunContainer} to give the Dispatcher (bound to this runner). */
  readonly runContainer: RunContainer;
  readonly #monitor: QueueMonitor;
  readonly #gate: SubmitGate;
  readonly #canceller: Canceller;
  readonly #renicer: Renicer;
  readonly #limiter: CommandLimiter;
  readonly #exec: Executor;
  readonly #closed = new AbortController();
  readonly #ctx: JobContext;
  readonly #jobs = new Map<string, { job: BatchJob; done: Promise<void> }>();
  /** Orphan job names still to hand over, with the attempts made. */
  readonly #orphans = new Map<string, number>();
  #handingOver = false;
  #swept = false;
  #dispatcher: Dispatcher | undefined;
  #attached: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #queueHealthy = true;
  #lastQueueError: { error: Error; result: RunResult | undefined } | undefined;
  /** Containers the dispatcher adopted (locked by our token before this process took them on), until their job is created. */
  readonly #adopted = new Set<string>();
  readonly #onAdopted = (c: Readonly<Container>): void => void this.#adopted.add(c.uuid);
  readonly #onSnapshot = (s: QueueSnapshot): void => this.#snapshot(s);
  readonly #onPollError = (err: Error, result: RunResult | undefined): void => {
    this.#lastQueueError = { error: err, result };
    if (this.#queueHealthy) this.#warn(`${err.message} (the queue is unknown until it works again)`);
    else log('queue query failed again: %s', err.message);
    this.#queueHealthy = false;
  };

  /**
   * @param adapter - The batch system.
   * @param options - The core's options.
   * @param defaults - The adapter's default argument templates, used when
   *   `options.args` / `options.gpuArgs` are absent.
   * @throws TypeError or RangeError for a bad option; `TemplateError` for a
   *   template with an unknown placeholder.
   */
  constructor(adapter: BatchAdapter, options: BatchRunnerOptions = {}, defaults: { args: readonly string[]; gpuArgs: readonly string[] } = { args: [], gpuArgs: [] }) {
    super();
    // Every container followed listens for the close (and removes its
    // listener when done): hundreds at once on a busy cluster are normal,
    // not the leak Node's warning after 10 would print to stderr.
    setMaxListeners(0, this.#closed.signal);
    const o = resolveBatchOptions(options, defaults);
    validateTemplates(o.args, adapter.templates, `${adapter.name} argument templates`);
    validateTemplates(o.gpuArgs, adapter.templates, `${adapter.name} GPU argument templates`);
    this.adapter = adapter;
    this.options = o;
    // The limiter keeps its monotonic clock unless a clock was injected.
    this.#limiter = new CommandLimiter(o.commandConcurrency, o.submitRate, options.clock);
    this.#exec = new Executor(adapter, this.#limiter, o.commandTimeout, (r) => this.emit('command', r), o.runner, (what) => this.#renicer.disable(what), o.clock);
    const exec: JobContext['exec'] = (spec, opts) => this.#exec.limited(spec, opts);
    this.#monitor = new QueueMonitor({
      intervalMs: o.queueInterval,
      maxIntervalMs: o.queueIntervalMax,
      name: adapter.queueQuery().command,
      clock: o.clock,
      query: (signal) => this.#exec.direct(adapter.queueQuery(), { signal, op: 'query' }, Math.max(2 * o.queueInterval, o.commandTimeout)),
      parse: (stdout, onBadLine) => adapter.parseQueue(stdout, onBadLine),
    });
    this.#gate = new SubmitGate(o.submitRetry.maxDelay, o.clock);
    this.#canceller = new Canceller({ adapter, exec: (spec) => exec(spec, { op: 'cancel' }), onWarning: (m) => this.#warn(m), clock: o.clock });
    this.#renicer = new Renicer({ adapter, exec: (spec) => exec(spec, { op: 'renice' }), spread: o.prioritySpread, clock: o.clock });
    this.#gate.on('paused', () =>
      this.#warn(`${adapter.name} refused a submission for a submit limit; pausing submissions until one of our jobs leaves the queue`),
    );
    this.#gate.on('probing', (why) => log('submissions paused; probing (%s)', why));
    this.#gate.on('resumed', () => log('submissions resumed'));
    this.#ctx = {
      adapter,
      options: o,
      monitor: this.#monitor,
      gate: this.#gate,
      canceller: this.#canceller,
      renicer: this.#renicer,
      secrets: new JobSecrets(o.secretsDir, adapter.jobUser),
      verdicts: new SharedVerdicts(),
      exec,
      closed: this.#closed.signal,
      warn: (m) => this.#warn(m),
      submitted: (uuid, result, jobId) => this.emit('submitted', uuid, result, jobId),
      lost: (info) => {
        this.emit('vanished', info.uuid, info.action);
        // `none`: the container had finished by itself; nothing was lost.
        if (info.action !== 'none') this.emit('lost', info);
      },
      finished: (uuid, kind) => this.emit('finished', uuid, kind),
      release: (uuid, opts) => this.#release(uuid, opts),
      adopted: (uuid) => this.#adopted.has(uuid),
    };
    this.runContainer = (d, container, updates) => this.#runContainer(d, container, updates);
  }

  /**
   * The jobs of the last queue listing that are ours: those of containers
   * this runner holds. The listing has every user's jobs.
   */
  get ownJobs(): QueueJob[] {
    const snap = this.#monitor.latest;
    const out: QueueJob[] = [];
    for (const name of this.#jobs.keys()) {
      const j = snap?.jobs.get(name);
      if (j) out.push(j);
    }
    return out;
  }

  /**
   * This runner's events as the {@link Runner} interface names them (a
   * subset of {@link BatchRunnerEvents}, with the same arguments), for the
   * CLI and the management server.
   */
  get events(): RunnerEventSource {
    // BatchRunnerEvents holds every RunnerEvents entry with the same or narrower arguments.
    return this as unknown as RunnerEventSource;
  }

  /** Current counters. */
  get status(): BatchRunnerStatus {
    const snap = this.#monitor.latest;
    let pending = 0;
    let running = 0;
    let inQueue = 0;
    // Reasons are scheduler text: no prototype, so no reason can name one of its keys.
    const pendingReasons = Object.create(null) as Record<string, number>;
    // The queue lists every user's jobs: count only those of containers we hold.
    for (const [name, j] of snap?.jobs ?? []) {
      if (!this.#jobs.has(name)) continue;
      inQueue++;
      if (j.state === 'pending') {
        pending++;
        pendingReasons[j.pendingReason] = (pendingReasons[j.pendingReason] ?? 0) + 1;
      } else if (j.state === 'running') running++;
    }
    let submitting = 0;
    for (const { job } of this.#jobs.values()) if (job.schedulingStatus === 'submitting') submitting++;
    return {
      scheduler: this.adapter.name,
      containers: this.#jobs.size,
      inQueue,
      pending,
      pendingReasons,
      running,
      submitting,
      atQuota: this.#gate.state !== 'open',
      queueHealthy: this.#queueHealthy,
      queueAgeMs: snap ? this.options.clock.now() - snap.finishedAt : undefined,
      queueIntervalMs: this.#monitor.interval,
      commandsRunning: this.#limiter.running,
      commandsWaiting: this.#limiter.waiting,
    };
  }

  /**
   * The queue poller (its snapshots are this runner's view of the queue);
   * for tests, which wait on its snapshots. {@link status} is the public view.
   *
   * @internal
   */
  get monitor(): QueueMonitor {
    return this.#monitor;
  }

  /** Scheduler commands started through the limiter so far (submit, cancel, renice, accounting). */
  get commandsStarted(): number {
    return this.#limiter.started;
  }

  /** A short sentence on where a held container stands ("Slurm: pending (Priority)", "submitting", "running on node X"). */
  schedulingStatus(uuid: string): string | undefined {
    const entry = this.#jobs.get(uuid);
    if (!entry) return undefined;
    if (!this.#queueHealthy && entry.job.schedulingStatus !== 'submitting') return `${this.adapter.name} queue unknown (query failing)`;
    return entry.job.schedulingStatus;
  }

  /**
   * The configured instance types `container` fits, cheapest first: the
   * first is what `%I` expands to. Empty without `instanceTypes`, or when
   * none fits (such a container is cancelled before submission).
   */
  instanceTypes(container: Readonly<Container>): InstanceTypeView[] {
    return fittingInstanceTypes(this.options.instanceTypes, container, this.options.instanceTypeRules);
  }

  /**
   * Ties the runner to `dispatcher`: starts queue polling, waits for the
   * first successful query, and hands jobs named like containers of this
   * cluster to the dispatcher (so that orphans of finished containers get
   * cancelled and live ones are followed, not submitted again). The
   * Dispatcher calls it; it does not close the runner (the Dispatcher does,
   * after its containers settle). Idempotent for the same dispatcher.
   *
   * @throws RunnerConfigError if the queue query cannot run at all (missing
   *   command, permission); Error if attached to another dispatcher or closed.
   */
  attach(dispatcher: Dispatcher, signal?: AbortSignal): Promise<void> {
    if (this.#dispatcher === dispatcher && this.#attached) return this.#attached;
    if (this.#dispatcher) return Promise.reject(new Error(`this ${this.adapter.name} runner is attached to another Dispatcher`));
    if (this.#closed.signal.aborted) return Promise.reject(new Error(`this ${this.adapter.name} runner is closed`));
    this.#dispatcher = dispatcher;
    dispatcher.on('adopted', this.#onAdopted);
    this.#monitor.on('snapshot', this.#onSnapshot);
    this.#monitor.on('pollError', this.#onPollError);
    this.#monitor.start();
    this.#attached = this.#startup(dispatcher, signal);
    return this.#attached;
  }

  /**
   * The second phase of a stop, called by the Dispatcher once its
   * containers have settled: stops queue polling and lets anything still
   * running return *without* cancelling its job (the jobs stay in the queue
   * for the next dispatcher to adopt). Resolves once commands in progress
   * have finished. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    log('closing');
    this.#closed.abort(new Error(`${this.adapter.name} runner closed`));
    this.#dispatcher?.off('adopted', this.#onAdopted);
    this.#gate.close();
    await this.#monitor.stop();
    this.#monitor.off('snapshot', this.#onSnapshot);
    this.#monitor.off('pollError', this.#onPollError);
    await Promise.allSettled([...this.#jobs.values()].map((e) => e.done));
    await Promise.all([this.#canceller.close(), this.#renicer.idle()]);
  }

  async #runContainer(d: Dispatcher, container: Container, updates: ContainerUpdates): Promise<void> {
    assertContainerUuid(container?.uuid);
    if (this.#closed.signal.aborted) throw new Error(`this ${this.adapter.name} runner is closed`);
    // One owner: the Dispatcher given this runner as `runner` attaches it
    // before its first poll and closes it after its containers settle.
    if (this.#dispatcher !== d) throw new Error(`this ${this.adapter.name} runner is not attached to this Dispatcher: give it as new Dispatcher({ runner })`);
    if (this.#jobs.has(container.uuid)) throw new Error(`container ${container.uuid} is already being run by this runner`);
    const job = new BatchJob(this.#ctx, d, container, updates);
    const done = job.run();
    this.#jobs.set(container.uuid, { job, done });
    try {
      await done;
    } finally {
      this.#jobs.delete(container.uuid);
      this.#adopted.delete(container.uuid);
    }
  }

  /** Cancels a held container's job at once (see {@link Runner.kill}); the Dispatcher releases the container. */
  kill(uuid: string, reason: string): void {
    this.#jobs.get(uuid)?.job.kill(reason);
  }

  #release(uuid: string, options: ReleaseOptions): Promise<ReleaseAction> {
    if (!this.#dispatcher) return Promise.reject(new Error(`this ${this.adapter.name} runner is not attached to a Dispatcher`));
    return this.#dispatcher.release(uuid, options);
  }

  #warn(message: string): void {
    log(message);
    this.emit('warning', message);
  }

  // ---- after each queue snapshot ----------------------------------------------

  #snapshot(snap: QueueSnapshot): void {
    if (!this.#queueHealthy) log('the queue query works again');
    this.#queueHealthy = true;
    this.#lastQueueError = undefined;
    this.#gate.observe(snap.jobs.keys());
    this.#renicer.onSnapshot(snap);
    if (this.#orphans.size > 0) void this.#handOverOrphans(snap);
    if (!this.#swept) {
      // Secrets files of jobs gone while no dispatcher ran: they hold a token.
      this.#swept = true;
      this.#ctx.secrets.sweep((uuid) => snap.jobs.has(uuid) || this.#jobs.has(uuid)).then(
        (n) => n > 0 && log('deleted %d stale job secrets file(s)', n),
        (err: unknown) => log('sweeping the job secrets directory: %s', describeError(err)),
      );
    }
  }

  // ---- startup and orphans ------------------------------------------------------

  /** The first successful snapshot; rejects if the query cannot run at all. */
  #firstSnapshot(signal: AbortSignal): Promise<QueueSnapshot> {
    return new Promise<QueueSnapshot>((resolve, reject) => {
      const ac = new AbortController();
      const onAbort = (): void => ac.abort(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      const onError = (err: Error, result: RunResult | undefined): void => {
        if (classifyOutcome(this.adapter, result ?? err, 'query') !== 'configuration') return;
        ac.abort(new RunnerConfigError(`${this.adapter.name} queue query cannot run: ${err.message}`, result ? 'configuration' : 'environment', { cause: err }));
      };
      // An error before we listen counts too.
      if (this.#lastQueueError) onError(this.#lastQueueError.error, this.#lastQueueError.result);
      this.#monitor.on('pollError', onError);
      const latest = this.#monitor.latest;
      (latest ? Promise.resolve(latest) : this.#monitor.nextSnapshot(ac.signal))
        .then(resolve, (err: unknown) => reject(ac.signal.aborted ? ac.signal.reason : err))
        .finally(() => {
          signal.removeEventListener('abort', onAbort);
          this.#monitor.off('pollError', onError);
        });
    });
  }

  /**
   * Every job in the queue named like a container of this cluster is handed
   * to the dispatcher, which gives it a runner: a live container's runner
   * follows the job; a finished or requeued container's runner sees its
   * updates already ended and cancels the job.
   */
  async #startup(d: Dispatcher, outer?: AbortSignal): Promise<void> {
    const signal = outer ? AbortSignal.any([outer, this.#closed.signal]) : this.#closed.signal;
    const auth: ApiClientAuthorization = d.auth ?? ((await once(d, 'identified', { signal })) as [ApiClientAuthorization])[0];
    const prefix = `${auth.uuid.slice(0, 5)}-dz642-`;
    // Where job secrets go must work before the first lock (e.g. LSF's sudo user without root).
    await this.#ctx.secrets.ready().catch((err: unknown) => {
      throw new RunnerConfigError(err instanceof Error ? err.message : String(err), 'environment', { cause: err });
    });
    const snap = await this.#firstSnapshot(signal);
    const names = [...snap.jobs.keys()].filter((n) => n.startsWith(prefix));
    log('startup: %d job(s) of cluster %s in the queue', names.length, prefix.slice(0, 5));
    if (names.length === 0) return;
    this.emit('orphans', names);
    for (const n of names) this.#orphans.set(n, 0);
    await this.#handOverOrphans(snap);
  }

  async #handOverOrphans(snap: QueueSnapshot): Promise<void> {
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
      // Only containers our token holds: the queue lists every user's jobs,
      // and another dispatcher's job is none of ours to cancel.
      await d.trackContainer(name, { lockedOnly: true });
      this.#orphans.delete(name);
    } catch (err) {
      if (this.#closed.signal.aborted) return;
      if (isApiStatus(err, 404)) {
        this.#orphans.delete(name);
        this.#warn(`${this.adapter.name} job ${name} is named like a container of this cluster, but there is no such container; leaving it alone`);
      } else if (attempts >= ORPHAN_ATTEMPTS) {
        this.#orphans.delete(name);
        this.#warn(`giving up on ${this.adapter.name} job ${name} found at startup: ${describeError(err)}`);
      } else {
        this.#orphans.set(name, attempts);
        log('could not track %s (attempt %d, will retry): %s', name, attempts, describeError(err));
      }
    }
  }
}
