/**
 * Keeps the order of our pending jobs in the scheduler in line with Arvados
 * priorities, by renicing after queue snapshots.
 *
 * @module
 */
import { logger } from '../../log.js';
import { realClock, type Clock } from '../../util/sleep.js';
import { describeError } from '../../util/errors.js';
import type { BatchAdapter, CommandSpec, PriorityChange, RunResult } from './adapter.js';
import type { QueueSnapshot } from './monitor.js';
import { planNice, wantedOrder, type ReniceCandidate } from './priority.js';

const log = logger('batch:renice');

/** Options of {@link Renicer}. */
export interface RenicerOptions {
  adapter: BatchAdapter;
  /** Runs one command through the runner's limiter. */
  exec: (spec: CommandSpec) => Promise<RunResult>;
  /** Gap between adjacent jobs (see `wantNice`). */
  spread: number;
  /** The queue monitor's clock (snapshot times are compared with it); default the real clock. */
  clock?: Clock;
}

/** What the scheduler refused for good, as verdicts said (see `Verdict`). */
export interface RenicerLimits {
  /** Stop renicing altogether. */
  renice: boolean;
  /** Only ever lower priorities. */
  raise: boolean;
}

/**
 * Holds the priority Arvados wants for each container (see `wantPriority`),
 * and after each snapshot renices the pending jobs that are out of order.
 *
 * Only pending jobs with a non-zero scheduler priority take part: renicing
 * does nothing for a job that already runs, and a held job (priority 0)
 * would drag the others down for no gain.
 *
 * A pass runs its commands in the background and nothing waits for it
 * (Arvados #13399: renicing must not hold up submissions). Snapshots that
 * arrive meanwhile, or that were taken before the pass ended, are skipped:
 * their values may predate the changes, and acting on them would renice the
 * same jobs twice.
 */
export class Renicer {
  readonly #opts: RenicerOptions;
  readonly #want = new Map<string, bigint>();
  #pass: Promise<void> | undefined;
  #lastPassEnd = 0;
  readonly #disabled: RenicerLimits = { renice: false, raise: false };

  constructor(options: RenicerOptions) {
    this.#opts = options;
  }

  /** Records the wanted priority of a container's job; 0n (or deleting) means "leave it alone". */
  setWant(uuid: string, priority: bigint): void {
    if (priority === 0n) this.#want.delete(uuid);
    else this.#want.set(uuid, priority);
  }

  /** Stops asking for what the scheduler refused for good (a verdict's `disable`). */
  disable(what: keyof RenicerLimits): void {
    if (!this.#disabled[what]) log('the scheduler refuses %s for good; not asking again', what === 'renice' ? 'priority changes' : 'priority raises');
    this.#disabled[what] = true;
  }

  /** Forgets a container's job. */
  delete(uuid: string): void {
    this.#want.delete(uuid);
  }

  /** The changes a snapshot calls for (without making them). */
  plan(snapshot: QueueSnapshot): PriorityChange[] {
    const candidates: ReniceCandidate[] = [];
    for (const job of snapshot.jobs.values()) {
      const want = this.#want.get(job.name);
      if (want === undefined || job.state !== 'pending' || job.priority <= 0) continue;
      candidates.push({ job, want });
    }
    if (this.#disabled.renice) return [];
    const ordered = wantedOrder(candidates);
    const { adapter, spread } = this.#opts;
    const mayRaise = !this.#disabled.raise;
    if (adapter.planPriorities) return adapter.planPriorities(ordered, spread, { mayRaise });
    // A raise (a smaller nice) the scheduler refuses would be asked again on every snapshot.
    const changes = planNice(ordered, spread);
    return mayRaise ? changes : changes.filter((c) => c.value >= c.job.nice);
  }

  /** Starts a renice pass for `snapshot`, unless one is running, the snapshot is stale, or the system cannot renice. */
  onSnapshot(snapshot: QueueSnapshot): void {
    if (!this.#opts.adapter.renice || this.#pass || snapshot.startedAt < this.#lastPassEnd) return;
    const changes = this.plan(snapshot);
    if (changes.length === 0) return;
    log('renicing %d job(s)', changes.length);
    this.#pass = Promise.all(changes.map((c) => this.#renice(c))).then(() => {
      this.#pass = undefined;
      this.#lastPassEnd = (this.#opts.clock ?? realClock).now();
    });
  }

  /** Resolves once no pass is running. */
  async idle(): Promise<void> {
    await this.#pass;
  }

  async #renice({ job, value }: PriorityChange): Promise<void> {
    const spec = this.#opts.adapter.renice?.(job, value);
    if (!spec) return;
    try {
      const r = await this.#opts.exec(spec);
      // A job that has just started or left refuses; the next snapshot tells.
      if (r.code !== 0) log('renice of %s (job %s) to %d: %s', job.name, job.jobId, value, r.stderr.trim() || `exit ${r.code ?? r.signal}`);
    } catch (err) {
      log('renice of %s (job %s) to %d failed: %s', job.name, job.jobId, value, describeError(err));
    }
  }
}
