/**
 * One container's life in a batch system: submit it (once), follow its job
 * in the queue snapshots, keep its priority, cancel it, notice when it is
 * gone, and say why it ended. Scheduler-neutral: everything specific comes
 * from the adapter.
 *
 * @module
 */
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { RunnerConfigError, type ReleaseAction, type ReleaseOptions } from '../../dispatcher/runner.js';
import type { ContainerUpdates } from '../../dispatcher/updates.js';
import { logger } from '../../log.js';
import type { Container } from '../../types.js';
import { describeError } from '../../util/errors.js';
import { crunchRunArgv, crunchRunSecrets } from '../crunch-run.js';
import type { BatchAdapter, CommandSpec, ErrorClass, QueueJob, RunResult, TerminalKind, TerminalReason } from './adapter.js';
import { classifyOutcome, complaint, type ExecOptions } from './exec.js';
import type { GateOutcome, GateTicket, SubmitGate } from './gate.js';
import type { Canceller } from './canceller.js';
import type { QueueMonitor, QueueSnapshot } from './monitor.js';
import type { ResolvedBatchOptions } from './options.js';
import { wantPriority } from './priority.js';
import type { Renicer } from './renicer.js';
import { JobSecrets, JobSecretsError } from './job-secrets.js';
import { badPartition, containerValues, withoutEchoes, type SharedVerdicts } from './echoes.js';
import { containerArguments, TemplateError } from './template.js';
import { chooseInstanceTypes, unsatisfiableRelease } from '../instance-types.js';

const log = logger('batch:job');

/** Variables of this process's environment that the submit command (and so the job) gets. */
const PASSED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'];
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What happened to a container whose job left the queue without being cancelled by us. */
export interface LostJob {
  readonly uuid: string;
  /** The scheduler's job id, if it was known. */
  readonly jobId: string | undefined;
  /** What the release did (`none`: the container had finished by itself, or is no longer ours). */
  readonly action: ReleaseAction;
  /** Successful queue queries in a row that did not list the job. */
  readonly misses: number;
  /** Milliseconds from the first of those to the decision. */
  readonly ms: number;
  /** The reason given to the release (the `logs` record, and `runtime_status.error` if cancelled). */
  readonly reason: string;
  /** What the scheduler's accounting said, if anything. */
  readonly terminal: TerminalReason | undefined;
}

/** What a {@link BatchJob} uses of its runner. */
export interface JobContext {
  readonly adapter: BatchAdapter;
  readonly options: ResolvedBatchOptions;
  readonly monitor: QueueMonitor;
  readonly gate: SubmitGate;
  readonly canceller: Canceller;
  readonly renicer: Renicer;
  /** The per-job secrets files. */
  readonly secrets: JobSecrets;
  /** Verdicts that stop more than one container, and their evidence. */
  readonly verdicts: SharedVerdicts;
  /** Runs a command through the runner's limiter. */
  exec(spec: CommandSpec, options?: ExecOptions): Promise<RunResult>;
  /** Aborted when the runner closes. */
  readonly closed: AbortSignal;
  warn(message: string): void;
  submitted(uuid: string, result: 'ok' | 'error' | 'duplicate', jobId: string | undefined): void;
  lost(info: LostJob): void;
  finished(uuid: string, kind: TerminalKind | 'UNKNOWN'): void;
  /** The dispatcher's single release path. */
  release(uuid: string, options: ReleaseOptions): Promise<ReleaseAction>;
  /** Whether the dispatcher adopted the container (it was locked by our token before this process took it on). */
  adopted(uuid: string): boolean;
}

/** Where a container stands, for `schedulingStatus`. */
export type JobPhase = 'waiting' | 'submitting' | 'queued' | 'left';

/** Why a submission step ended without a job. */
class Interrupted extends Error {
  override name = 'Interrupted';
}

/**
 * Runs one container through the batch system; created by the runner for
 * each `runContainer` call. {@link run} resolves when there is nothing left
 * to watch; it rejects only with a {@link RunnerConfigError} (our
 * configuration or this host is wrong, not the container).
 */
export class BatchJob {
  readonly uuid: string;
  readonly #ctx: JobContext;
  readonly #d: Dispatcher;
  readonly #updates: ContainerUpdates;
  #latest: Container;
  /** Aborted on stop: the runner closed, or the dispatcher is stopping. */
  readonly #stop = new AbortController();
  /** Aborted when a submission step should give up waiting (stop, or cancel wanted). */
  #interrupt: AbortController | undefined;

  /** The job was in a snapshot at least once. */
  #seen = false;
  /** The submit command accepted it. */
  #submitted = false;
  /** The last snapshot listed it. */
  #present = false;
  /** We asked for it to be cancelled. */
  #cancelRequested = false;
  /** We released the container ourselves (never-clearing reason). */
  #released = false;
  /** `Dispatcher.kill` asked for the job to go at once. */
  #killed = false;
  #failedAttempts = 0;
  /** Failed submissions retried as transient (the bounded ones). */
  #transientFailures = 0;
  #misses = 0;
  #firstMissAt = 0;
  #args: string[] | undefined;
  #jobId: string | undefined;
  #job: QueueJob | undefined;
  #jobs: readonly QueueJob[] = [];
  #stuckSince: number | undefined;
  #phase: JobPhase = 'waiting';
  /** An adopted container's job was missing from enough snapshots to submit it. */
  #absenceConfirmed = false;
  /** The accounting vetoed "lost" once already (warned). */
  #vetoed = false;
  /** What `%I` expands to, once chosen ('' without configured types). */
  #instanceType: string | undefined;

  constructor(ctx: JobContext, d: Dispatcher, container: Container, updates: ContainerUpdates) {
    this.uuid = container.uuid;
    this.#ctx = ctx;
    this.#d = d;
    this.#latest = container;
    this.#updates = updates;
  }

  /** A short sentence on where the container stands. */
  get schedulingStatus(): string {
    const name = this.#ctx.adapter.name;
    if (this.#phase === 'submitting') return this.#ctx.gate.state === 'open' ? 'submitting' : `${name}: submissions paused (at quota)`;
    if (this.#phase === 'left') return `${name}: job finished`;
    const job = this.#job;
    if (this.#phase === 'waiting' || !job) return `waiting for ${name}`;
    if (job.state === 'pending') return `${name}: pending (${job.pendingReason || 'no reason given'})`;
    if (job.state === 'running') return job.nodes ? `running on node ${job.nodes}` : `${name}: running`;
    return `${name}: ${job.rawState.toLowerCase()}`;
  }

  /** The job as the last snapshot showed it, if it did. */
  get job(): QueueJob | undefined {
    return this.#present ? this.#job : undefined;
  }

  /** Follows the container until its job is gone (or the dispatcher stops). */
  async run(): Promise<void> {
    const onClosed = (): void => this.#stop.abort(this.#ctx.closed.reason);
    const onEnded = (): void => {
      if (this.#updates.endReason === 'stopped') this.#stop.abort(new Error('dispatcher stopping'));
      this.#changed();
    };
    if (this.#ctx.closed.aborted) onClosed();
    else this.#ctx.closed.addEventListener('abort', onClosed, { once: true });
    if (this.#updates.signal.aborted) onEnded();
    else this.#updates.signal.addEventListener('abort', onEnded, { once: true });
    const pump = this.#pump();
    try {
      await this.#loop();
    } finally {
      this.#ctx.closed.removeEventListener('abort', onClosed);
      this.#updates.signal.removeEventListener('abort', onEnded);
      this.#ctx.renicer.delete(this.uuid);
      this.#ctx.canceller.forget(this.uuid);
      this.#interrupt?.abort();
      // A job left pending for the next dispatcher still needs its file.
      if (!this.#stopping || (!this.#submitted && !this.#seen)) {
        this.#ctx.secrets.remove(this.uuid).catch((err: unknown) => this.#ctx.warn(`could not delete the secrets file of ${this.uuid}: ${describeError(err)}`));
      }
      // The pump ends when the dispatcher ends the stream after we return.
      void pump;
    }
  }

  // ---- state ----------------------------------------------------------------

  get #stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  /** Cancel requested in Arvados (priority 0), killed, or the container is no longer ours to run. */
  #wantCancel(): boolean {
    const ended = this.#updates.endReason;
    return this.#killed || (ended !== undefined && ended !== 'stopped') || this.#latest.priority === 0;
  }

  /**
   * Cancels the job at once (`Dispatcher.kill`): a job in the queue is
   * cancelled now, even if its container is already final; one not
   * submitted yet never is.
   */
  kill(reason: string): void {
    if (this.#killed) return;
    this.#killed = true;
    log('%s: killed (%s)', this.uuid, reason);
    this.#interrupt?.abort(new Interrupted('killed'));
    if (this.#stopping) return;
    if (this.#present && !this.#cancelRequested) this.#requestCancel();
    else this.#ctx.monitor.hurry();
  }

  async #pump(): Promise<void> {
    for await (const c of this.#updates) {
      this.#latest = c;
      this.#changed();
    }
  }

  /** A newer record arrived, or the stream ended. */
  #changed(): void {
    if (this.#stopping) {
      this.#interrupt?.abort(new Interrupted('stopping'));
      return;
    }
    if (this.#wantCancel()) {
      this.#interrupt?.abort(new Interrupted('cancel wanted'));
      // Don't wait for the next snapshot to start cancelling a job we know is
      // there, unless the container finished: its job is most likely leaving
      // by itself, and the next (hurried) snapshot tells.
      if (this.#present && !this.#cancelRequested && this.#updates.endReason !== 'finished') this.#requestCancel();
      else this.#ctx.monitor.hurry();
    } else if (this.#present) {
      this.#ctx.renicer.setWant(this.uuid, wantPriority(this.#latest));
    }
  }

  /** Asks for a cancel; `seenAt` is the start of the query that showed the job, if one prompted this. */
  #requestCancel(seenAt?: number): void {
    if (!this.#cancelRequested) {
      log('cancelling the job of %s (%s)', this.uuid, this.#killed ? 'killed' : this.#updates.endReason ? `updates ended: ${this.#updates.endReason}` : 'priority 0');
    }
    this.#cancelRequested = true;
    this.#ctx.renicer.delete(this.uuid);
    this.#ctx.canceller.cancel(this.uuid, this.#jobs, seenAt);
    this.#ctx.monitor.hurry();
  }

  #onPresent(snap: QueueSnapshot): void {
    const job = snap.jobs.get(this.uuid) as QueueJob;
    this.#seen = true;
    this.#present = true;
    this.#phase = 'queued';
    this.#misses = 0;
    this.#job = job;
    this.#jobId ??= job.jobId;
    this.#jobs = snap.all.filter((j) => j.name === this.uuid);
    if (this.#wantCancel() || this.#released) {
      this.#requestCancel(snap.startedAt);
      return;
    }
    this.#ctx.renicer.setWant(this.uuid, wantPriority(this.#latest));
    this.#checkStuck(job, snap);
    log('%s: job %s %s %s (nice %d)', this.uuid, job.jobId, job.rawState, job.pendingReason, job.nice);
  }

  /** A pending reason that can never clear: warn at once, cancel the container after the grace. */
  #checkStuck(job: QueueJob, snap: QueueSnapshot): void {
    const { adapter, options } = this.#ctx;
    if (job.state !== 'pending' || !adapter.neverClears(job.pendingReason)) {
      this.#stuckSince = undefined;
      return;
    }
    if (this.#stuckSince === undefined) {
      this.#stuckSince = snap.startedAt;
      this.#ctx.warn(
        `The ${adapter.name} job ${job.jobId} for container ${this.uuid} is pending with reason ${job.pendingReason}, ` +
          `which cannot clear as submitted; the container is cancelled unless it clears within ${Math.round(options.neverClearsGrace / 1000)} s.`,
      );
    }
    if (snap.startedAt - this.#stuckSince < options.neverClearsGrace) return;
    const reason = `${adapter.name} job ${job.jobId} cannot start: pending with reason ${job.pendingReason} (the request can never be satisfied as submitted)`;
    this.#released = true;
    this.#requestCancel(snap.startedAt);
    void this.#ctx.release(this.uuid, { reason, cancel: true }).then(
      (action) => {
        log('%s: %s (%s)', this.uuid, reason, action);
        this.#ctx.finished(this.uuid, 'CANCELLED');
      },
      (err: unknown) => {
        // Not released: try again on a later snapshot.
        this.#released = false;
        this.#stuckSince = snap.startedAt - options.neverClearsGrace;
        this.#ctx.warn(`container ${this.uuid}: could not cancel it (${reason}): ${describeError(err)}`);
      },
    );
  }

  // ---- the loop -------------------------------------------------------------

  async #loop(): Promise<void> {
    for (;;) {
      if (this.#stopping) return;
      if (this.#needsSubmission()) {
        if (this.#instanceType === undefined && !(await this.#chooseInstanceType())) return;
        if ((await this.#submitStep()) === 'done') return;
        continue;
      }
      let snap: QueueSnapshot;
      try {
        // Hurry while the job is missing: the grace should not stretch with a slowed poller.
        snap = await this.#ctx.monitor.nextSnapshot(this.#stop.signal, this.#misses > 0);
      } catch (err) {
        if (this.#stopping) return;
        throw err;
      }
      if (this.#stopping) return;
      if (snap.jobs.has(this.uuid)) {
        this.#onPresent(snap);
        continue;
      }
      this.#present = false;
      // Gone after we cancelled it, or there is nothing to cancel: done.
      if (this.#cancelRequested || this.#wantCancel()) {
        this.#phase = 'left';
        this.#reportEnd();
        return;
      }
      // Submitted or seen before, or adopted as Running: it left on its own.
      if (this.#misses++ === 0) this.#firstMissAt = snap.startedAt;
      const ms = this.#ctx.options.clock.now() - this.#firstMissAt;
      const grace = this.#ctx.options.vanishGrace;
      log('%s: not in the queue (%d miss(es), %d ms)', this.uuid, this.#misses, ms);
      if (this.#misses >= grace.misses && ms >= grace.ms && (await this.#declareLost(ms))) return;
    }
  }

  /** Locked, ours to run, and no job of ours has ever been seen or accepted for it. */
  #needsSubmission(): boolean {
    return !this.#seen && !this.#submitted && !this.#cancelRequested && this.#latest.state === 'Locked' && !this.#wantCancel();
  }

  /**
   * One round of submission: wait for the back-pressure gate, check a fresh
   * snapshot, and submit only if the job is not there. Every submission is
   * preceded by its own fresh snapshot, so a submission that failed on our
   * side but reached the scheduler is found instead of duplicated.
   */
  async #submitStep(): Promise<'again' | 'done'> {
    const interrupt = new AbortController();
    this.#interrupt = interrupt;
    const signal = interrupt.signal;
    const onStop = (): void => interrupt.abort(new Interrupted('stopping'));
    this.#stop.signal.addEventListener('abort', onStop, { once: true });
    let ticket: GateTicket | undefined;
    let outcome: GateOutcome = 'other';
    this.#phase = 'submitting';
    try {
      if (this.#stopping || this.#wantCancel()) return 'again';
      if (badPartition(this.#latest)) {
        const refused = await this.#refuseBadPartition(signal);
        if (refused !== 'fine') return refused;
      }
      if (!this.#absenceConfirmed && this.#ctx.adopted(this.uuid)) {
        // Adopted Locked: the dispatcher that locked it (a previous run, or
        // the active one of a standby pair, killed) may have had a submit
        // command in flight, whose job shows up a moment later. Submit only
        // after the job has been missing as long as a lost one must be.
        for (let i = 0; i < this.#ctx.options.vanishGrace.misses; i++) {
          const snap = await this.#ctx.monitor.nextSnapshot(signal, true);
          if (snap.jobs.has(this.uuid)) {
            this.#onPresent(snap);
            return 'again';
          }
        }
        this.#absenceConfirmed = true;
      }
      ticket = await this.#ctx.gate.enter(signal);
      const snap = await this.#ctx.monitor.nextSnapshot(signal, true);
      if (snap.jobs.has(this.uuid)) {
        if (this.#failedAttempts > 0) this.#ctx.submitted(this.uuid, 'duplicate', snap.jobs.get(this.uuid)?.jobId);
        this.#onPresent(snap);
        return 'again';
      }
      if (this.#failedAttempts > 0 && !(await this.#stillOurs(signal))) return 'done';
      if (signal.aborted) return 'again';

      const result = await this.#submit(signal);
      if (!(result instanceof Error) && result.code === 0) {
        outcome = 'submitted';
        this.#submitted = true;
        this.#jobId = this.#ctx.adapter.parseSubmit(result);
        log('submitted %s as job %s', this.uuid, this.#jobId ?? '(unknown id)');
        this.#ctx.submitted(this.uuid, 'ok', this.#jobId);
        this.#ctx.verdicts.clear();
        return 'again';
      }
      const kind = this.#classify(result);
      this.#ctx.submitted(this.uuid, 'error', undefined);
      outcome = kind === 'backpressure' ? 'backpressure' : 'other';
      this.#failedAttempts++;
      ticket.done(outcome);
      return await this.#afterFailure(kind, result, signal);
    } catch (err) {
      if (signal.aborted && !(err instanceof RunnerConfigError)) return 'again';
      throw err;
    } finally {
      ticket?.done(outcome);
      if (this.#phase === 'submitting') this.#phase = 'waiting';
      this.#stop.signal.removeEventListener('abort', onStop);
      if (this.#interrupt === interrupt) this.#interrupt = undefined;
    }
  }

  /**
   * What a failed submission means, read without any text the container
   * chose; a verdict that would stop other containers too counts only on
   * evidence this container does not control, else it is retried as
   * transient (and so bounded).
   */
  #classify(result: RunResult | Error): ErrorClass {
    const values = containerValues(this.#latest);
    const kind = classifyOutcome(this.#ctx.adapter, withoutEchoes(result, values), 'submit');
    if ((kind === 'configuration' || kind === 'backpressure') && !(result instanceof Error) && !this.#ctx.verdicts.confirm(kind, values)) {
      log('%s: %s verdict not confirmed by another container yet; retrying as transient', this.uuid, kind);
      return 'transient';
    }
    return kind;
  }

  /**
   * The container's partitions can never be submitted: cancel it with the
   * reason, after a fresh read confirms it (a wrong answer for one cycle
   * costs nothing). `fine`: the fresh record is; `again`: the API failed,
   * try later.
   */
  async #refuseBadPartition(signal: AbortSignal): Promise<'done' | 'again' | 'fine'> {
    try {
      const fresh = await this.#d.client.getContainer(this.uuid, { signal });
      const reason = badPartition(fresh);
      if (!reason) {
        this.#latest = fresh;
        return 'fine';
      }
      this.#ctx.warn(`container ${this.uuid}: ${reason}; cancelling it`);
      await this.#ctx.release(this.uuid, { reason, cancel: true });
      return 'done';
    } catch (err) {
      if (signal.aborted) throw err;
      this.#failedAttempts++;
      const delay = this.#backoff();
      this.#ctx.warn(`container ${this.uuid}: could not check its partitions: ${describeError(err)}; retrying in ${Math.round(delay)} ms`);
      await this.#ctx.options.clock.sleep(delay, signal);
      return 'again';
    }
  }

  async #afterFailure(kind: ErrorClass, result: RunResult | Error, signal: AbortSignal): Promise<'again' | 'done'> {
    const name = this.#ctx.adapter.name;
    const what = `submitting container ${this.uuid} to ${name} failed (${kind}): ${complaint(result)}`;
    if (kind === 'configuration') {
      // Not the container's fault: no attempt charged, and new locks stop.
      throw new RunnerConfigError(what, result instanceof Error ? 'environment' : 'configuration', { cause: result });
    }
    if (kind === 'fatal') {
      // It may have reached the scheduler all the same (e.g. the answer was
      // lost): look before giving up. Cancel-wanted does not interrupt this,
      // since a job found here may need cancelling.
      const snap = await this.#ctx.monitor.nextSnapshot(this.#stop.signal, true);
      if (snap.jobs.has(this.uuid)) {
        log('%s; but the job is in the queue, so following it', what);
        this.#submitted = true;
        this.#ctx.submitted(this.uuid, 'duplicate', snap.jobs.get(this.uuid)?.jobId);
        this.#onPresent(snap);
        return 'again';
      }
      this.#ctx.warn(what);
      await this.#ctx.release(this.uuid, { reason: `${name} refused the job: ${complaint(result)}`, error: result });
      return 'done';
    }
    if (kind === 'backpressure') {
      // The gate is paused now; the next round waits there.
      log('%s; waiting for room in the queue', what);
      return 'again';
    }
    this.#transientFailures++;
    const { maxAttempts } = this.#ctx.options.submitRetry;
    if (this.#transientFailures >= maxAttempts) {
      // Bounded: give the container back (the API cancels it after
      // MaxDispatchAttempts locks), unless the job reached the queue after all.
      const snap = await this.#ctx.monitor.nextSnapshot(this.#stop.signal, true);
      if (snap.jobs.has(this.uuid)) {
        this.#submitted = true;
        this.#ctx.submitted(this.uuid, 'duplicate', snap.jobs.get(this.uuid)?.jobId);
        this.#onPresent(snap);
        return 'again';
      }
      this.#ctx.warn(`${what}; giving up after ${this.#transientFailures} attempts`);
      await this.#ctx.release(this.uuid, { reason: `${name} did not accept the job after ${this.#transientFailures} attempts: ${complaint(result)}`, error: result });
      return 'done';
    }
    const delay = this.#backoff();
    this.#ctx.warn(`${what}; retrying in ${Math.round(delay)} ms`);
    await this.#ctx.options.clock.sleep(delay, signal);
    return 'again';
  }

  #backoff(): number {
    const { initialDelay, maxDelay, factor } = this.#ctx.options.submitRetry;
    const full = Math.min(maxDelay, initialDelay * factor ** Math.min(this.#failedAttempts - 1, 64));
    return full / 2 + (Math.random() * full) / 2;
  }

  /** Before submitting again: the API still shows the container Locked by us, wanting to run. */
  async #stillOurs(signal: AbortSignal): Promise<boolean> {
    for (;;) {
      try {
        const fresh = await this.#d.client.getContainer(this.uuid, { signal });
        const mine = fresh.state === 'Locked' && fresh.locked_by_uuid === this.#d.auth?.uuid && fresh.priority > 0;
        if (!mine) log('not submitting %s again: it is %s, priority %d, locked by %s', this.uuid, fresh.state, fresh.priority, fresh.locked_by_uuid);
        return mine;
      } catch (err) {
        if (signal.aborted) throw err;
        // Unknown: keep trying, as for a scheduler failure.
        this.#failedAttempts++;
        const delay = this.#backoff();
        this.#ctx.warn(`could not check container ${this.uuid} before submitting it again: ${describeError(err)}; retrying in ${Math.round(delay)} ms`);
        await this.#ctx.options.clock.sleep(delay, signal);
      }
    }
  }

  async #submit(signal: AbortSignal): Promise<RunResult | Error> {
    const o = this.#ctx.options;
    this.#args ??= this.#templateArgs();
    const argv = crunchRunArgv(o.crunchRunCommand, o.crunchRunArgs, this.uuid, o.runtimeEngine);
    const env = this.#environment();
    let secretsPath: string;
    try {
      secretsPath = await this.#ctx.secrets.write(this.uuid, this.#secrets(env));
    } catch (err) {
      // This host's directory, not the container: stop locking.
      const why = err instanceof JobSecretsError ? err.message : `cannot write the job secrets file: ${describeError(err)}`;
      throw new RunnerConfigError(why, 'environment', { cause: err });
    }
    const spec = this.#ctx.adapter.submit({ uuid: this.uuid, script: JobSecrets.script(argv, secretsPath), args: this.#args, container: this.#latest, instanceType: this.#instanceType ?? '' });
    try {
      return await this.#ctx.exec(spec, { env, signal, op: 'submit', echoes: containerValues(this.#latest) });
    } catch (err) {
      if (signal.aborted) throw err;
      return err instanceof Error ? err : new Error(describeError(err));
    }
  }

  /**
   * Chooses the instance type for `%I`; returns false, after cancelling the
   * container, when no configured type can hold it: submitting it would only
   * leave a job that can never start.
   */
  async #chooseInstanceType(): Promise<boolean> {
    const o = this.#ctx.options;
    const choice = chooseInstanceTypes(o.instanceTypes, this.#latest, o.instanceTypeRules);
    if (choice.kind !== 'unsatisfiable') {
      this.#instanceType = choice.kind === 'chosen' ? choice.types[0].name : '';
      return true;
    }
    const release = unsatisfiableRelease(choice);
    this.#released = true;
    this.#ctx.warn(`container ${this.uuid}: ${release.reason}; cancelling it`);
    try {
      await this.#ctx.release(this.uuid, release);
      this.#ctx.finished(this.uuid, 'CANCELLED');
    } catch (err) {
      this.#ctx.warn(`container ${this.uuid}: could not cancel it (${release.reason}): ${describeError(err)}`);
    }
    return false;
  }

  /** The expanded templates (and GPU templates when the container wants GPUs). */
  #templateArgs(): string[] {
    const { adapter, options: o } = this.#ctx;
    try {
      const maxRunMinutes = adapter.maxRunMinutes?.(this.#latest);
      return containerArguments(this.#latest, { ...o, instanceType: this.#instanceType, ...(maxRunMinutes === undefined ? {} : { maxRunMinutes }) }, adapter.templates, `${adapter.name} argument templates`);
    } catch (err) {
      // Validated at startup; reaching this is our configuration, never the container's.
      if (err instanceof TemplateError) throw new RunnerConfigError(err.message, 'configuration', { cause: err });
      throw err;
    }
  }

  /**
   * The submit command's environment, which most schedulers export to the
   * job and show to other users: no secret in it.
   */
  #environment(): Record<string, string> {
    const pass = [...PASSED_ENV, ...(this.#ctx.adapter.passEnv ?? [])];
    const passes = (k: string): boolean => pass.some((p) => (p.endsWith('*') ? k.startsWith(p.slice(0, -1)) : k === p));
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && passes(k)) env[k] = v;
    env.PATH ??= DEFAULT_PATH;
    Object.assign(env, this.#ctx.options.environment);
    return env;
  }

  /**
   * What the job's secrets file sets before crunch-run starts: PATH and the
   * `environment` option (Grid Engine exports nothing of qsub's
   * environment), the API credentials and `GatewayAuthSecret`.
   */
  #secrets(env: Readonly<Record<string, string>>): Record<string, string> {
    const o = this.#ctx.options;
    return { PATH: env.PATH ?? DEFAULT_PATH, ...o.environment, ...crunchRunSecrets(this.uuid, this.#d.client.credentialsEnv(), o.systemRootToken) };
  }

  // ---- a job that left the queue --------------------------------------------

  /** How the job ended, from the scheduler's accounting (best effort). */
  async #terminal(background = false): Promise<TerminalReason | undefined> {
    const { adapter, options } = this.#ctx;
    if (!options.accounting || !adapter.finalState || this.#jobId === undefined || this.#ctx.closed.aborted) return undefined;
    try {
      return await adapter.finalState({ jobId: this.#jobId, name: this.uuid }, (spec, signal) => this.#ctx.exec(spec, { signal, op: 'accounting', background }), this.#ctx.closed);
    } catch (err) {
      log('%s: accounting lookup of job %s failed: %s', this.uuid, this.#jobId, describeError(err));
      return undefined;
    }
  }

  /**
   * The accounting says the job missing from the queue is still alive: it
   * vetoes "lost" (warned once per job); the next miss asks again.
   */
  async #stillRunning(): Promise<boolean> {
    const { adapter, options } = this.#ctx;
    const jobId = this.#jobId ?? this.#job?.jobId;
    if (!options.accounting || !adapter.stillRunning || jobId === undefined || this.#ctx.closed.aborted) return false;
    let alive: boolean;
    try {
      alive = await adapter.stillRunning({ jobId, name: this.uuid }, (spec, signal) => this.#ctx.exec(spec, { signal, op: 'accounting' }), this.#ctx.closed);
    } catch (err) {
      log('%s: accounting lookup of job %s failed: %s', this.uuid, jobId, describeError(err));
      return false;
    }
    if (alive && !this.#vetoed) {
      this.#vetoed = true;
      this.#ctx.warn(`${adapter.name} job ${jobId} of container ${this.uuid} is missing from the queue listing, but the accounting says it is still alive: not treating it as lost`);
    }
    return alive;
  }

  /**
   * The job left after a cancel, or after its container ended: say how it
   * ended, in the background (the container needs nothing more). The lookup
   * is for metrics, so it waits behind every other scheduler command and
   * never slows down submissions.
   */
  #reportEnd(): void {
    if (!this.#seen && !this.#submitted) return;
    const fallback = this.#cancelRequested ? 'CANCELLED' : 'UNKNOWN';
    void this.#terminal(true).then((t) => this.#ctx.finished(this.uuid, t?.kind ?? fallback));
  }

  /**
   * The job has been missing for the whole grace period: release the
   * container with the reason (the dispatcher reads a fresh record and does
   * nothing if it finished by itself or is no longer ours). Returns false if
   * the release failed (try again after the next snapshot).
   */
  async #declareLost(ms: number): Promise<boolean> {
    const { adapter } = this.#ctx;
    if (await this.#stillRunning()) return false;
    const terminal = await this.#terminal();
    const job = this.#jobId === undefined ? `The ${adapter.name} job` : `${adapter.name} job ${this.#jobId}`;
    const reason =
      terminal && terminal.kind !== 'COMPLETED'
        ? terminal.detail
        : `${job} for container ${this.uuid} left the queue without being cancelled by the dispatcher ` +
          `(missing from ${this.#misses} queue listings over ${Math.round(ms / 1000)} s)${terminal ? `: ${terminal.detail}` : ''}`;
    let action: ReleaseAction;
    try {
      action = await this.#ctx.release(this.uuid, { reason });
    } catch (err) {
      if (this.#stopping) return true;
      this.#ctx.warn(`container ${this.uuid}: its ${adapter.name} job is gone, but releasing it failed (will retry): ${describeError(err)}`);
      return false;
    }
    this.#phase = 'left';
    if (action !== 'none') this.#ctx.warn(`${reason}; container ${action}`);
    this.#ctx.lost({ uuid: this.uuid, jobId: this.#jobId, action, misses: this.#misses, ms, reason, terminal });
    this.#ctx.finished(this.uuid, terminal?.kind ?? 'UNKNOWN');
    return true;
  }
}
