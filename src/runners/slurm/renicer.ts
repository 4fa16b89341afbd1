/**
 * Keeps the order of our pending jobs in Slurm in line with Arvados
 * priorities, by renicing after squeue snapshots.
 *
 * @module
 */
import { logger } from '../../log.js';
import type { CommandRunner } from './commands.js';
import { reniceActions, type ReniceAction, type ReniceCandidate } from './nice.js';
import type { SqueueSnapshot } from './squeue.js';

const log = logger('slurm:renice');

/** Options of {@link Renicer}. */
export interface RenicerOptions {
  /** Runs `scontrol` (should be the limited runner). */
  runner: CommandRunner;
  /** Gap between adjacent jobs' nice values (see `wantNice`). */
  spread: number;
  /** Per command, in ms. */
  timeoutMs: number;
}

/**
 * Holds the priority Arvados wants for each container (see
 * `slurmWantPriority`), and after each snapshot renices the pending jobs
 * whose nice value is not where it should be.
 *
 * Only PENDING jobs with a non-zero Slurm priority take part: nice does
 * nothing for a job that already runs, and a held job (priority 0) would
 * drag the others down for no gain.
 *
 * A pass runs its scontrol commands in the background and nothing waits for
 * it (Arvados #13399: renicing must not hold up submissions). Snapshots that
 * arrive meanwhile, or that were taken before the pass ended, are skipped:
 * their nice values may predate the changes, and acting on them would
 * renice the same jobs twice.
 */
export class Renicer {
  readonly #opts: RenicerOptions;
  readonly #want = new Map<string, bigint>();
  #pass: Promise<void> | undefined;
  #lastPassEnd = 0;

  constructor(options: RenicerOptions) {
    this.#opts = options;
  }

  /** Records the wanted priority of a container's job; 0 (or deleting) means "leave it alone". */
  setWant(name: string, priority: bigint): void {
    if (priority === 0n) this.#want.delete(name);
    else this.#want.set(name, priority);
  }

  /** Forgets a container's job. */
  delete(name: string): void {
    this.#want.delete(name);
  }

  /** The renice commands a snapshot calls for (without running them). */
  plan(snapshot: SqueueSnapshot): ReniceAction[] {
    const jobs: ReniceCandidate[] = [];
    for (const job of snapshot.jobs.values()) {
      const want = this.#want.get(job.name);
      if (want === undefined || job.state !== 'PENDING' || job.priority <= 0) continue;
      jobs.push({ name: job.name, nice: job.nice, priority: job.priority, wantPriority: want });
    }
    return reniceActions(jobs, this.#opts.spread);
  }

  /** Starts a renice pass for `snapshot`, unless one is running or the snapshot is stale. */
  onSnapshot(snapshot: SqueueSnapshot): void {
    if (this.#pass || snapshot.startedAt < this.#lastPassEnd) return;
    const actions = this.plan(snapshot);
    if (actions.length === 0) return;
    log('renicing %d job(s)', actions.length);
    this.#pass = Promise.all(actions.map((a) => this.#renice(a))).then(() => {
      this.#pass = undefined;
      this.#lastPassEnd = Date.now();
    });
  }

  /** Resolves once no pass is running. */
  async idle(): Promise<void> {
    await this.#pass;
  }

  async #renice({ name, nice }: ReniceAction): Promise<void> {
    try {
      const r = await this.#opts.runner('scontrol', ['update', `JobName=${name}`, `Nice=${nice}`], {
        timeoutMs: this.#opts.timeoutMs,
      });
      // It also exits 1 when a finished job of the same name lingers
      // (MinJobAge) although the live one was reniced; the next snapshot
      // tells, so this is not worth a warning.
      if (r.code !== 0) log('scontrol update JobName=%s Nice=%d: %s', name, nice, r.stderr.trim() || `exit ${r.code ?? r.signal}`);
    } catch (err) {
      log('scontrol update JobName=%s Nice=%d failed: %s', name, nice, err instanceof Error ? err.message : String(err));
    }
  }
}
