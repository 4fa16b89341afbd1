/**
 * Submitting one container's job, at most once: each submission waits for
 * the back-pressure gate and is preceded by its own fresh snapshot, so a
 * submission that failed on our side but reached the scheduler is found
 * instead of duplicated. Failures are classified without any text the
 * container chose; transient ones are retried with backoff, and bounded.
 *
 * @module
 */
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { RunnerConfigError } from '../../dispatcher/runner.js';
import { logger } from '../../log.js';
import { describeError } from '../../util/errors.js';
import { chooseInstanceTypes, unsatisfiableRelease } from '../instance-types.js';
import type { ErrorClass, RunResult } from './adapter.js';
import { badPartition, containerValues, withoutEchoes } from './echoes.js';
import { classifyOutcome, complaint } from './exec.js';
import type { GateOutcome, GateTicket } from './gate.js';
import type { JobContext } from './job-context.js';
import { Interrupted, type JobState } from './job-state.js';
import type { QueueSnapshot } from './monitor.js';
import { SubmitCommand } from './submit-command.js';

const log = logger('batch:job');

/** The submission of one container's job; see the module. */
export class Submission {
  readonly uuid: string;
  readonly #ctx: JobContext;
  readonly #d: Dispatcher;
  readonly #state: JobState;
  /** Takes in a snapshot that lists the job: from then on it is followed, not submitted. */
  readonly #onPresent: (snap: QueueSnapshot) => void;
  readonly #command: SubmitCommand;
  #failedAttempts = 0;
  /** Failed submissions retried as transient (the bounded ones). */
  #transientFailures = 0;
  /** An adopted container's job was missing from enough snapshots to submit it. */
  #absenceConfirmed = false;
  /** What `%I` expands to, once chosen ('' without configured types). */
  #instanceType: string | undefined;

  constructor(ctx: JobContext, d: Dispatcher, state: JobState, onPresent: (snap: QueueSnapshot) => void) {
    this.uuid = state.uuid;
    this.#ctx = ctx;
    this.#d = d;
    this.#state = state;
    this.#onPresent = onPresent;
    this.#command = new SubmitCommand(ctx, d, state);
  }

  /** Whether the instance type for `%I` has been chosen (see {@link Submission.chooseInstanceType}). */
  get hasInstanceType(): boolean {
    return this.#instanceType !== undefined;
  }

  /**
   * Chooses the instance type for `%I`; returns false, after cancelling the
   * container, when no configured type can hold it: submitting it would only
   * leave a job that can never start.
   */
  async chooseInstanceType(): Promise<boolean> {
    const o = this.#ctx.options;
    const choice = chooseInstanceTypes(o.instanceTypes, this.#state.latest, o.instanceTypeRules);
    if (choice.kind !== 'unsatisfiable') {
      this.#instanceType = choice.kind === 'chosen' ? choice.types[0].name : '';
      return true;
    }
    const release = unsatisfiableRelease(choice);
    this.#state.released = true;
    this.#ctx.warn(`container ${this.uuid}: ${release.reason}; cancelling it`);
    try {
      await this.#ctx.release(this.uuid, release);
      this.#ctx.finished(this.uuid, 'CANCELLED');
    } catch (err) {
      this.#ctx.warn(`container ${this.uuid}: could not cancel it (${release.reason}): ${describeError(err)}`);
    }
    return false;
  }

  /**
   * One round of submission: wait for the back-pressure gate, check a fresh
   * snapshot, and submit only if the job is not there. Every submission is
   * preceded by its own fresh snapshot, so a submission that failed on our
   * side but reached the scheduler is found instead of duplicated.
   */
  async step(): Promise<'again' | 'done'> {
    const interrupt = new AbortController();
    this.#state.interrupt = interrupt;
    const signal = interrupt.signal;
    const onStop = (): void => interrupt.abort(new Interrupted('stopping'));
    this.#state.stop.signal.addEventListener('abort', onStop, { once: true });
    let ticket: GateTicket | undefined;
    let outcome: GateOutcome = 'other';
    this.#state.phase = 'submitting';
    try {
      if (this.#state.stopping || this.#state.wantCancel()) return 'again';
      if (badPartition(this.#state.latest)) {
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

      const result = await this.#command.run(this.#instanceType, signal);
      if (!(result instanceof Error) && result.code === 0) {
        outcome = 'submitted';
        this.#state.submitted = true;
        this.#state.jobId = this.#ctx.adapter.parseSubmit(result);
        log('submitted %s as job %s', this.uuid, this.#state.jobId ?? '(unknown id)');
        this.#ctx.submitted(this.uuid, 'ok', this.#state.jobId);
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
      if (this.#state.phase === 'submitting') this.#state.phase = 'waiting';
      this.#state.stop.signal.removeEventListener('abort', onStop);
      if (this.#state.interrupt === interrupt) this.#state.interrupt = undefined;
    }
  }

  /**
   * What a failed submission means, read without any text the container
   * chose; a verdict that would stop other containers too counts only on
   * evidence this container does not control, else it is retried as
   * transient (and so bounded).
   */
  #classify(result: RunResult | Error): ErrorClass {
    const values = containerValues(this.#state.latest);
    const kind = classifyOutcome(this.#ctx.adapter, withoutEchoes(result, values), 'submit');
    if ((kind === 'configuration' || kind === 'backpressure') && !(result instanceof Error) && !this.#ctx.verdicts.confirm(kind, values, this.#ctx.options.clock.now())) {
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
        this.#state.latest = fresh;
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
      const snap = await this.#ctx.monitor.nextSnapshot(this.#state.stop.signal, true);
      if (snap.jobs.has(this.uuid)) {
        log('%s; but the job is in the queue, so following it', what);
        this.#state.submitted = true;
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
      const snap = await this.#ctx.monitor.nextSnapshot(this.#state.stop.signal, true);
      if (snap.jobs.has(this.uuid)) {
        this.#state.submitted = true;
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
}
