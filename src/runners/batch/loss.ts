/**
 * Noticing that a submitted or seen job left the queue without being
 * cancelled by us: only after it has been missing from enough successful
 * queue listings for long enough (the vanish grace), and unless the
 * scheduler's accounting says it is still alive, is the container released
 * as lost. Also says how a job that left ended, for metrics.
 *
 * @module
 */
import type { ReleaseAction } from '../../dispatcher/runner.js';
import { logger } from '../../log.js';
import { describeError } from '../../util/errors.js';
import type { TerminalReason } from './adapter.js';
import type { JobContext } from './job-context.js';
import type { JobState } from './job-state.js';

const log = logger('batch:job');

/** Follows the absence of one container's job from the queue; see the module. */
export class LossDetector {
  readonly uuid: string;
  readonly #ctx: JobContext;
  readonly #state: JobState;
  /** Successful queue queries in a row that did not list the job. */
  #misses = 0;
  /** When the first of those started. */
  #firstMissAt = 0;
  /** The accounting vetoed "lost" once already (warned). */
  #vetoed = false;

  constructor(ctx: JobContext, state: JobState) {
    this.uuid = state.uuid;
    this.#ctx = ctx;
    this.#state = state;
  }

  /** Whether the last snapshot missed the job: the next one is hurried, so the grace does not stretch with a slowed poller. */
  get missing(): boolean {
    return this.#misses > 0;
  }

  /** The job was listed: any absence so far is forgotten. */
  reset(): void {
    this.#misses = 0;
  }

  /**
   * Counts a snapshot, started at `startedAt`, that did not list the job;
   * returns how many ms it has been missing, if that is the whole grace
   * (then {@link declareLost} decides), else undefined.
   */
  missed(startedAt: number): number | undefined {
    if (this.#misses++ === 0) this.#firstMissAt = startedAt;
    const ms = this.#ctx.options.clock.now() - this.#firstMissAt;
    const grace = this.#ctx.options.vanishGrace;
    log('%s: not in the queue (%d miss(es), %d ms)', this.uuid, this.#misses, ms);
    return this.#misses >= grace.misses && ms >= grace.ms ? ms : undefined;
  }

  /** How the job ended, from the scheduler's accounting (best effort). */
  async #terminal(background = false): Promise<TerminalReason | undefined> {
    const { adapter, options } = this.#ctx;
    if (!options.accounting || !adapter.finalState || this.#state.jobId === undefined || this.#ctx.closed.aborted) return undefined;
    try {
      return await adapter.finalState({ jobId: this.#state.jobId, name: this.uuid }, (spec, signal) => this.#ctx.exec(spec, { signal, op: 'accounting', background }), this.#ctx.closed, options.clock);
    } catch (err) {
      log('%s: accounting lookup of job %s failed: %s', this.uuid, this.#state.jobId, describeError(err));
      return undefined;
    }
  }

  /**
   * The accounting says the job missing from the queue is still alive: it
   * vetoes "lost" (warned once per job); the next miss asks again.
   */
  async #stillRunning(): Promise<boolean> {
    const { adapter, options } = this.#ctx;
    const jobId = this.#state.jobId ?? this.#state.job?.jobId;
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
  reportEnd(): void {
    if (!this.#state.seen && !this.#state.submitted) return;
    const fallback = this.#state.cancelRequested ? 'CANCELLED' : 'UNKNOWN';
    void this.#terminal(true).then((t) => this.#ctx.finished(this.uuid, t?.kind ?? fallback));
  }

  /**
   * The job has been missing for the whole grace period: release the
   * container with the reason (the dispatcher reads a fresh record and does
   * nothing if it finished by itself or is no longer ours). Returns false if
   * the release failed (try again after the next snapshot).
   */
  async declareLost(ms: number): Promise<boolean> {
    const { adapter } = this.#ctx;
    if (await this.#stillRunning()) return false;
    const terminal = await this.#terminal();
    const job = this.#state.jobId === undefined ? `The ${adapter.name} job` : `${adapter.name} job ${this.#state.jobId}`;
    const reason =
      terminal && terminal.kind !== 'COMPLETED'
        ? terminal.detail
        : `${job} for container ${this.uuid} left the queue without being cancelled by the dispatcher ` +
          `(missing from ${this.#misses} queue listings over ${Math.round(ms / 1000)} s)${terminal ? `: ${terminal.detail}` : ''}`;
    let action: ReleaseAction;
    try {
      action = await this.#ctx.release(this.uuid, { reason });
    } catch (err) {
      if (this.#state.stopping) return true;
      this.#ctx.warn(`container ${this.uuid}: its ${adapter.name} job is gone, but releasing it failed (will retry): ${describeError(err)}`);
      return false;
    }
    this.#state.phase = 'left';
    if (action !== 'none') this.#ctx.warn(`${reason}; container ${action}`);
    this.#ctx.lost({ uuid: this.uuid, jobId: this.#state.jobId, action, misses: this.#misses, ms, reason, terminal });
    this.#ctx.finished(this.uuid, terminal?.kind ?? 'UNKNOWN');
    return true;
  }
}
