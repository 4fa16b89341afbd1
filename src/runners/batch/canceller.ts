/**
 * Batched, repeated cancellation. When many containers are cancelled at once
 * (a user cancels a workflow, or the dispatcher finds a pile of orphans), one
 * command per job would be thousands of RPCs to a controller that is already
 * busy (Arvados #14110): jobs asked for in the same tick are cancelled
 * together, by job id, with the adapter's commands. Callers ask again on each
 * snapshot that still shows the job, so a cancellation lost on the way is
 * repeated until the job is gone.
 *
 * @module
 */
import { realClock, type Clock } from '../../util/sleep.js';
import { logger } from '../../log.js';
import { describeError } from '../../util/errors.js';
import type { BatchAdapter, CommandSpec, QueueJob, RunResult } from './adapter.js';

const log = logger('batch:cancel');

/** Job ids per cancel command: keeps command lines short. */
const JOBS_PER_COMMAND = 500;

/** Options of {@link Canceller}. */
export interface CancellerOptions {
  adapter: BatchAdapter;
  /** Runs one command through the runner's limiter. */
  exec: (spec: CommandSpec) => Promise<RunResult>;
  /** Called with a message when a cancellation fails. */
  onWarning: (message: string) => void;
  /** The queue monitor's clock (snapshot times are compared with it); default the real clock. */
  clock?: Clock;
}

/**
 * Collects the jobs to cancel during one tick of the event loop, then
 * cancels them together. A container whose cancellation is in progress is
 * not queued again, so callers may ask on every snapshot without piling up
 * commands behind a slow controller.
 */
export class Canceller {
  readonly #opts: CancellerOptions;
  readonly #pending = new Map<string, readonly QueueJob[]>();
  readonly #inFlight = new Set<string>();
  readonly #batches = new Set<Promise<void>>();
  /** When the last cancellation of each container's jobs finished. */
  readonly #finishedAt = new Map<string, number>();
  #scheduled = false;
  #closed = false;

  constructor(options: CancellerOptions) {
    this.#opts = options;
  }

  /**
   * Asks for `jobs` (all of one container's) to be cancelled. Does not wait:
   * success shows in a later snapshot.
   *
   * @param seenAt - When the query that showed the jobs started, if a
   *   snapshot prompted this call. A snapshot that started before the last
   *   cancellation of `uuid` finished may predate its effect, so it is ignored.
   */
  cancel(uuid: string, jobs: readonly QueueJob[], seenAt?: number): void {
    if (this.#closed || this.#inFlight.has(uuid) || jobs.length === 0) return;
    if (seenAt !== undefined && seenAt <= (this.#finishedAt.get(uuid) ?? -Infinity)) return;
    this.#pending.set(uuid, jobs);
    if (this.#scheduled) return;
    this.#scheduled = true;
    // After every job woken by the same snapshot has had its turn.
    setImmediate(() => this.#flush());
  }

  /** Forgets `uuid` (its jobs are gone). */
  forget(uuid: string): void {
    this.#finishedAt.delete(uuid);
  }

  /** Stops taking requests; resolves once the batches in progress have finished. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pending.clear();
    await this.idle();
  }

  /** Resolves once no batch is in progress. */
  async idle(): Promise<void> {
    while (this.#batches.size > 0 || this.#scheduled) {
      if (this.#batches.size === 0) await new Promise((r) => setImmediate(r));
      else await Promise.allSettled([...this.#batches]);
    }
  }

  #flush(): void {
    this.#scheduled = false;
    const entries = [...this.#pending];
    this.#pending.clear();
    if (entries.length === 0) return;
    const uuids = entries.map(([u]) => u);
    for (const u of uuids) this.#inFlight.add(u);
    const jobs = entries.flatMap(([, j]) => j);
    const batch: Promise<void> = this.#cancelJobs(jobs)
      .catch((err: unknown) => this.#opts.onWarning(`cancelling ${jobs.length} ${this.#opts.adapter.name} job(s) failed: ${describeError(err)}`))
      .finally(() => {
        const now = (this.#opts.clock ?? realClock).now();
        for (const u of uuids) {
          this.#inFlight.delete(u);
          this.#finishedAt.set(u, now);
        }
        this.#batches.delete(batch);
      });
    this.#batches.add(batch);
  }

  async #cancelJobs(jobs: readonly QueueJob[]): Promise<void> {
    log('cancelling %d job(s)', jobs.length);
    for (let i = 0; i < jobs.length; i += JOBS_PER_COMMAND) {
      for (const spec of this.#opts.adapter.cancel(jobs.slice(i, i + JOBS_PER_COMMAND))) {
        const what = `${spec.command} ${spec.args.filter((a) => a.startsWith('-')).join(' ')}`.trim();
        try {
          const r = await this.#opts.exec(spec);
          if (r.code !== 0 && !(r.code !== null && this.#opts.adapter.cancelGone(r))) {
            this.#opts.onWarning(`${what} failed: ${r.stderr.trim() || `exit ${r.code ?? r.signal}`}`);
          }
        } catch (err) {
          this.#opts.onWarning(`${what} failed: ${describeError(err)}`);
        }
      }
    }
  }
}
