/**
 * Batched cancellation. When many containers are cancelled at once (a user
 * cancels a workflow, or the dispatcher finds a pile of orphans), one scancel
 * per job and state would be thousands of RPCs to a controller that is
 * already busy (Arvados #14110).
 *
 * scancel 22.05 takes a single job name: `--name=a,b` looks for a job
 * literally named "a,b", and of several `--name` options only the last
 * counts (both checked against Slurm 22.05.8). It does take any number of
 * job IDs, and combines them with `--state`. So names asked for in the same
 * tick are turned into job IDs with one `squeue --name=a,b,…` (squeue does
 * take lists), and cancelled with one scancel per state. A lone name is
 * cancelled by name, as before.
 *
 * @module
 */
import { logger } from '../../log.js';
import { assertContainerUuid } from '../../uuid.js';
import type { CommandRunner, RunResult } from './commands.js';
import { slurmCli } from './commands.js';

const log = logger('slurm:scancel');

/** Names per `squeue --name=` lookup, job IDs per scancel: keeps command lines short. */
const NAMES_PER_LOOKUP = 100;
const IDS_PER_SCANCEL = 500;

/**
 * The scancel calls for a set of job IDs: remove pending jobs, and send
 * SIGTERM to the batch step (crunch-run) of running and suspended ones,
 * never SIGKILL (Arvados #12891), as {@link slurmCli}'s `scancel` does by name.
 */
const BY_STATE: ReadonlyArray<readonly string[]> = [
  ['--state=pending'],
  ['--batch', '--signal=TERM', '--state=running'],
  ['--batch', '--signal=TERM', '--state=suspended'],
];

// What scancel says, with exit status 1, about IDs whose jobs have ended
// since they were looked up: expected, and harmless for the other IDs.
const ENDED_JOB = /Invalid job id specified|already completing or completed/i;

/** Options of {@link ScancelBatcher}. */
export interface ScancelBatcherOptions {
  /** Runs `scancel` (should be the limited runner). */
  runner: CommandRunner;
  /** Runs the `squeue` lookup. */
  squeueRunner: CommandRunner;
  /** squeue's `--user`. */
  user: string;
  /** Per command, in ms. */
  timeoutMs: number;
  /** Called with a message when a cancellation fails. */
  onWarning: (message: string) => void;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Collects the job names to cancel during one tick of the event loop, then
 * cancels them together. A name whose cancellation is still in progress is
 * not queued again, so callers may ask on every squeue snapshot without
 * piling up scancel processes behind a slow controller.
 *
 * @example
 * batcher.cancel(uuid1);
 * batcher.cancel(uuid2); // same tick: one squeue lookup, then one scancel per state
 */
export class ScancelBatcher {
  readonly #opts: ScancelBatcherOptions;
  readonly #pending = new Set<string>();
  readonly #inFlight = new Set<string>();
  readonly #batches = new Set<Promise<void>>();
  /** When the last cancellation of each name finished. */
  readonly #finishedAt = new Map<string, number>();
  #scheduled = false;
  #closed = false;

  constructor(options: ScancelBatcherOptions) {
    this.#opts = options;
  }

  /** Names waiting for the next batch or being cancelled now. */
  get busy(): ReadonlySet<string> {
    return new Set([...this.#pending, ...this.#inFlight]);
  }

  /**
   * Asks for the jobs named `name` (a container UUID) to be cancelled. Does
   * not wait: success shows in a later squeue snapshot.
   *
   * @param seenAt - When the squeue run that showed the job started, if a
   *   snapshot prompted this call. A snapshot that started before the last
   *   cancellation of `name` finished (or in the same millisecond) may
   *   predate its effect, so it is ignored.
   * @throws TypeError if `name` is not a container UUID.
   */
  cancel(name: string, seenAt?: number): void {
    assertContainerUuid(name);
    if (this.#closed || this.#inFlight.has(name)) return;
    if (seenAt !== undefined && seenAt <= (this.#finishedAt.get(name) ?? -Infinity)) return;
    this.#pending.add(name);
    if (this.#scheduled) return;
    this.#scheduled = true;
    // After every runner woken by the same squeue snapshot has had its turn.
    setImmediate(() => this.#flush());
  }

  /** Forgets `name` (its job is gone). */
  forget(name: string): void {
    this.#finishedAt.delete(name);
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
    const names = [...this.#pending];
    this.#pending.clear();
    if (names.length === 0) return;
    for (const n of names) this.#inFlight.add(n);
    const batch: Promise<void> = this.#cancelNames(names)
      .catch((err: unknown) => this.#opts.onWarning(`scancel of ${names.length} job(s) failed: ${describe(err)}`))
      .finally(() => {
        const now = Date.now();
        for (const n of names) {
          this.#inFlight.delete(n);
          this.#finishedAt.set(n, now);
        }
        this.#batches.delete(batch);
      });
    this.#batches.add(batch);
  }

  async #cancelNames(names: string[]): Promise<void> {
    if (names.length === 1) {
      await this.#byName(names[0]);
      return;
    }
    const ids = await this.#lookup(names);
    if (!ids) {
      await Promise.all(names.map((n) => this.#byName(n)));
      return;
    }
    log('cancelling %d job(s) of %d name(s) by ID', ids.length, names.length);
    for (let i = 0; i < ids.length; i += IDS_PER_SCANCEL) {
      await this.#byIds(ids.slice(i, i + IDS_PER_SCANCEL));
    }
  }

  async #byName(name: string): Promise<void> {
    try {
      const r = await slurmCli(this.#opts.runner).scancel(name, { signal: AbortSignal.timeout(this.#opts.timeoutMs) });
      // scancel exits 0 when no job matches: anything else is a real failure.
      if (r.code !== 0) this.#opts.onWarning(`scancel --name=${name} failed: ${this.#why(r)}`);
    } catch (err) {
      this.#opts.onWarning(`scancel --name=${name} failed: ${describe(err)}`);
    }
  }

  async #byIds(ids: string[]): Promise<void> {
    for (const extra of BY_STATE) {
      try {
        const r = await this.#opts.runner('scancel', [...extra, ...ids], { timeoutMs: this.#opts.timeoutMs });
        if (r.code === 0) continue;
        const unexpected = r.stderr
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l !== '' && !ENDED_JOB.test(l));
        if (unexpected.length > 0 || r.code === null) {
          this.#opts.onWarning(`scancel ${extra.join(' ')} of ${ids.length} job(s) failed: ${unexpected.join('; ') || this.#why(r)}`);
        }
      } catch (err) {
        this.#opts.onWarning(`scancel ${extra.join(' ')} of ${ids.length} job(s) failed: ${describe(err)}`);
      }
    }
  }

  /** Job IDs of our queued jobs with these names, or undefined if squeue failed. */
  async #lookup(names: string[]): Promise<string[] | undefined> {
    const ids: string[] = [];
    for (let i = 0; i < names.length; i += NAMES_PER_LOOKUP) {
      const chunk = names.slice(i, i + NAMES_PER_LOOKUP);
      let r: RunResult;
      try {
        r = await this.#opts.squeueRunner(
          'squeue',
          ['--noheader', `--user=${this.#opts.user}`, '--format=%i %j', `--name=${chunk.join(',')}`],
          { timeoutMs: this.#opts.timeoutMs },
        );
      } catch (err) {
        log('squeue lookup failed: %s', describe(err));
        return undefined;
      }
      if (r.code !== 0) {
        log('squeue lookup failed: %s', this.#why(r));
        return undefined;
      }
      const wanted = new Set(chunk);
      for (const line of r.stdout.split('\n')) {
        const m = /^\s*(\d+)\s+(\S+)\s*$/.exec(line);
        if (m && wanted.has(m[2])) ids.push(m[1]);
      }
    }
    return ids;
  }

  #why(r: RunResult): string {
    return r.stderr.trim() || `exit ${r.code ?? r.signal}`;
  }
}
