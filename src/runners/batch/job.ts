/**
 * One container's life in a batch system: submit it (once), follow its job
 * in the queue snapshots, keep its priority, cancel it, notice when it is
 * gone, and say why it ended. Scheduler-neutral: everything specific comes
 * from the adapter. Submitting is {@link Submission}'s, noticing a lost job
 * {@link LossDetector}'s; this module follows the job and cancels it.
 *
 * @module
 */
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import type { ContainerUpdates } from '../../dispatcher/updates.js';
import { logger } from '../../log.js';
import type { Container } from '../../types.js';
import { describeError } from '../../util/errors.js';
import type { QueueJob } from './adapter.js';
import type { JobContext } from './job-context.js';
import { Interrupted, JobState } from './job-state.js';
import { LossDetector } from './loss.js';
import type { QueueSnapshot } from './monitor.js';
import { wantPriority } from './priority.js';
import { Submission } from './submission.js';

const log = logger('batch:job');

/**
 * Runs one container through the batch system; created by the runner for
 * each `runContainer` call. {@link run} resolves when there is nothing left
 * to watch; it rejects only with a {@link RunnerConfigError} (our
 * configuration or this host is wrong, not the container).
 */
export class BatchJob {
  readonly uuid: string;
  readonly #ctx: JobContext;
  readonly #state: JobState;
  readonly #submission: Submission;
  readonly #loss: LossDetector;
  /** Since when the job has been pending with a reason that never clears. */
  #stuckSince: number | undefined;

  constructor(ctx: JobContext, d: Dispatcher, container: Container, updates: ContainerUpdates) {
    this.uuid = container.uuid;
    this.#ctx = ctx;
    this.#state = new JobState(container, updates);
    this.#submission = new Submission(ctx, d, this.#state, (snap) => this.#onPresent(snap));
    this.#loss = new LossDetector(ctx, this.#state);
  }

  /** A short sentence on where the container stands. */
  get schedulingStatus(): string {
    const name = this.#ctx.adapter.name;
    const { phase, job } = this.#state;
    if (phase === 'submitting') return this.#ctx.gate.state === 'open' ? 'submitting' : `${name}: submissions paused (at quota)`;
    if (phase === 'left') return `${name}: job finished`;
    if (phase === 'waiting' || !job) return `waiting for ${name}`;
    if (job.state === 'pending') return `${name}: pending (${job.pendingReason || 'no reason given'})`;
    if (job.state === 'running') return job.nodes ? `running on node ${job.nodes}` : `${name}: running`;
    return `${name}: ${job.rawState.toLowerCase()}`;
  }

  /** The job as the last snapshot showed it, if it did. */
  get job(): QueueJob | undefined {
    return this.#state.present ? this.#state.job : undefined;
  }

  /** Follows the container until its job is gone (or the dispatcher stops). */
  async run(): Promise<void> {
    const s = this.#state;
    const onClosed = (): void => s.stop.abort(this.#ctx.closed.reason);
    const onEnded = (): void => {
      if (s.updates.endReason === 'stopped') s.stop.abort(new Error('dispatcher stopping'));
      this.#changed();
    };
    if (this.#ctx.closed.aborted) onClosed();
    else this.#ctx.closed.addEventListener('abort', onClosed, { once: true });
    if (s.updates.signal.aborted) onEnded();
    else s.updates.signal.addEventListener('abort', onEnded, { once: true });
    const pump = this.#pump();
    try {
      await this.#loop();
    } finally {
      this.#ctx.closed.removeEventListener('abort', onClosed);
      s.updates.signal.removeEventListener('abort', onEnded);
      this.#ctx.renicer.delete(this.uuid);
      this.#ctx.canceller.forget(this.uuid);
      s.interrupt?.abort();
      // A job left pending for the next dispatcher still needs its file.
      if (!s.stopping || (!s.submitted && !s.seen)) {
        this.#ctx.secrets.remove(this.uuid).catch((err: unknown) => this.#ctx.warn(`could not delete the secrets file of ${this.uuid}: ${describeError(err)}`));
      }
      // The pump ends when the dispatcher ends the stream after we return.
      void pump;
    }
  }

  // ---- cancelling -----------------------------------------------------------

  /**
   * Cancels the job at once (`Dispatcher.kill`): a job in the queue is
   * cancelled now, even if its container is already final; one not
   * submitted yet never is.
   */
  kill(reason: string): void {
    const s = this.#state;
    if (s.killed) return;
    s.killed = true;
    log('%s: killed (%s)', this.uuid, reason);
    s.interrupt?.abort(new Interrupted('killed'));
    if (s.stopping) return;
    if (s.present && !s.cancelRequested) this.#requestCancel();
    else this.#ctx.monitor.hurry();
  }

  async #pump(): Promise<void> {
    for await (const c of this.#state.updates) {
      this.#state.latest = c;
      this.#changed();
    }
  }

  /** A newer record arrived, or the stream ended. */
  #changed(): void {
    const s = this.#state;
    if (s.stopping) {
      s.interrupt?.abort(new Interrupted('stopping'));
      return;
    }
    if (s.wantCancel()) {
      s.interrupt?.abort(new Interrupted('cancel wanted'));
      // Don't wait for the next snapshot to start cancelling a job we know is
      // there, unless the container finished: its job is most likely leaving
      // by itself, and the next (hurried) snapshot tells.
      if (s.present && !s.cancelRequested && s.updates.endReason !== 'finished') this.#requestCancel();
      else this.#ctx.monitor.hurry();
    } else if (s.present) {
      this.#ctx.renicer.setWant(this.uuid, wantPriority(s.latest));
    }
  }

  /** Asks for a cancel; `seenAt` is the start of the query that showed the job, if one prompted this. */
  #requestCancel(seenAt?: number): void {
    const s = this.#state;
    if (!s.cancelRequested) {
      log('cancelling the job of %s (%s)', this.uuid, s.killed ? 'killed' : s.updates.endReason ? `updates ended: ${s.updates.endReason}` : 'priority 0');
    }
    s.cancelRequested = true;
    this.#ctx.renicer.delete(this.uuid);
    this.#ctx.canceller.cancel(this.uuid, s.jobs, seenAt);
    this.#ctx.monitor.hurry();
  }

  // ---- following the job in the queue ---------------------------------------

  #onPresent(snap: QueueSnapshot): void {
    const s = this.#state;
    const job = snap.jobs.get(this.uuid) as QueueJob;
    s.seen = true;
    s.present = true;
    s.phase = 'queued';
    this.#loss.reset();
    s.job = job;
    s.jobId ??= job.jobId;
    s.jobs = snap.all.filter((j) => j.name === this.uuid);
    if (s.wantCancel() || s.released) {
      this.#requestCancel(snap.startedAt);
      return;
    }
    this.#ctx.renicer.setWant(this.uuid, wantPriority(s.latest));
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
    this.#state.released = true;
    this.#requestCancel(snap.startedAt);
    void this.#ctx.release(this.uuid, { reason, cancel: true }).then(
      (action) => {
        log('%s: %s (%s)', this.uuid, reason, action);
        this.#ctx.finished(this.uuid, 'CANCELLED');
      },
      (err: unknown) => {
        // Not released: try again on a later snapshot.
        this.#state.released = false;
        this.#stuckSince = snap.startedAt - options.neverClearsGrace;
        this.#ctx.warn(`container ${this.uuid}: could not cancel it (${reason}): ${describeError(err)}`);
      },
    );
  }

  async #loop(): Promise<void> {
    const s = this.#state;
    for (;;) {
      if (s.stopping) return;
      if (s.needsSubmission()) {
        if (!this.#submission.hasInstanceType && !(await this.#submission.chooseInstanceType())) return;
        if ((await this.#submission.step()) === 'done') return;
        continue;
      }
      let snap: QueueSnapshot;
      try {
        // Hurry while the job is missing: the grace should not stretch with a slowed poller.
        snap = await this.#ctx.monitor.nextSnapshot(s.stop.signal, this.#loss.missing);
      } catch (err) {
        if (s.stopping) return;
        throw err;
      }
      if (s.stopping) return;
      if (snap.jobs.has(this.uuid)) {
        this.#onPresent(snap);
        continue;
      }
      s.present = false;
      // Gone after we cancelled it, or there is nothing to cancel: done.
      if (s.cancelRequested || s.wantCancel()) {
        s.phase = 'left';
        this.#loss.reportEnd();
        return;
      }
      // Submitted or seen before, or adopted as Running: it left on its own.
      const ms = this.#loss.missed(snap.startedAt);
      if (ms !== undefined && (await this.#loss.declareLost(ms))) return;
    }
  }
}
