/**
 * Watching Slurm's queue: one shared poller runs squeue on its own interval,
 * and callers wait for the next snapshot instead of running squeue themselves,
 * so monitoring 100 containers costs one squeue per interval, not 100.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { userInfo } from 'node:os';
import { logger } from '../../log.js';
import { isContainerUuid } from '../../uuid.js';
import type { CommandRunner, RunResult } from './commands.js';
import { spawnCommand } from './commands.js';

const log = logger('slurm:squeue');

/** The squeue output format: name, nice, priority, state, reason. */
export const SQUEUE_FORMAT = '%j %y %Q %T %r';

/** One line of squeue output. */
export interface SqueueJob {
  /** Job name: the container UUID. */
  name: string;
  nice: number;
  /** Slurm priority, which already includes the effect of `nice`. */
  priority: number;
  /** e.g. `PENDING`, `RUNNING`, `COMPLETING`. */
  state: string;
  /** Why it is pending, e.g. `Resources`, `Priority`, `None`; may contain spaces. */
  reason: string;
}

const INTEGER = /^-?\d+$/;

/**
 * Parses `squeue --noheader --format='%j %y %Q %T %r'` output into jobs by
 * name. Lines whose name is not a container UUID (other users' or non-Arvados
 * jobs) are skipped; so are malformed lines, which are passed to `onBadLine`.
 *
 * Container UUIDs contain no spaces, so the first four fields split cleanly
 * and the reason is the rest of the line.
 */
export function parseSqueue(stdout: string, onBadLine?: (line: string) => void): Map<string, SqueueJob> {
  const jobs = new Map<string, SqueueJob>();
  for (const raw of stdout.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const fields = line.split(/\s+/);
    const [name, nice, priority, state] = fields;
    if (!isContainerUuid(name)) continue;
    if (fields.length < 4 || !INTEGER.test(nice) || !INTEGER.test(priority) || !/^[A-Z_]+$/.test(state)) {
      onBadLine?.(raw);
      continue;
    }
    jobs.set(name, {
      name,
      nice: Number(nice),
      priority: Number(priority),
      state,
      reason: fields.slice(4).join(' '),
    });
  }
  return jobs;
}

/** The queue as one squeue run saw it. */
export interface SqueueSnapshot {
  /** Number of the poll that produced it; increases with every poll, failed ones included. */
  readonly seq: number;
  /** `Date.now()` when squeue was started. */
  readonly startedAt: number;
  /** `Date.now()` when its output had been read. */
  readonly finishedAt: number;
  /** Our jobs by name (container UUID). */
  readonly jobs: ReadonlyMap<string, SqueueJob>;
}

/** Options of {@link SqueueMonitor}. */
export interface SqueueMonitorOptions {
  /** Time between the starts of two polls, in ms. */
  intervalMs: number;
  /** Runs squeue; default {@link spawnCommand} (squeue is not limited like sbatch). */
  runner?: CommandRunner;
  /** The squeue executable; default `squeue`. */
  command?: string;
  /** Only this user's jobs (`--user`); default the user this process runs as. */
  user?: string;
  /**
   * Add `--all`, which shows jobs in hidden partitions and partitions this
   * user may not use (it does not add other users' jobs). Default false.
   */
  allPartitions?: boolean;
  /** Kill a squeue that takes longer than this; default max(2 × interval, 60 s). */
  timeoutMs?: number;
}

/** Events of {@link SqueueMonitor}. */
export interface SqueueMonitorEvents {
  /** A poll succeeded. */
  snapshot: [SqueueSnapshot];
  /** A poll failed; nothing changes, waiters keep waiting. */
  pollError: [Error];
}

interface Waiter {
  minSeq: number;
  resolve: (snapshot: SqueueSnapshot) => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** Rejection of {@link SqueueMonitor.nextSnapshot} waiters when the monitor stops. */
export class SqueueMonitorStoppedError extends Error {
  override name = 'SqueueMonitorStoppedError';
  constructor() {
    super('squeue monitor stopped');
  }
}

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    // No passwd entry (e.g. an arbitrary UID in a container): squeue takes
    // a numeric UID as well.
    return String(process.getuid?.() ?? '');
  }
}

/**
 * Polls squeue for this user's jobs and hands out snapshots.
 *
 * The first poll starts as soon as {@link start} is called, then one every
 * `intervalMs` (measured start to start; a poll that overruns delays the next
 * to the following interval boundary, and polls never overlap).
 *
 * A failed squeue (non-zero exit, timeout, not installed) means "unknown":
 * no snapshot is produced, so nothing looks gone, and waiters keep waiting
 * for the next successful poll.
 *
 * @example
 * const monitor = new SqueueMonitor({ intervalMs: 10_000 });
 * monitor.start();
 * const { jobs } = await monitor.nextSnapshot();
 * if (!jobs.has(uuid)) await submit(uuid);
 * await monitor.stop();
 */
export class SqueueMonitor extends EventEmitter<SqueueMonitorEvents> {
  readonly #intervalMs: number;
  readonly #runner: CommandRunner;
  readonly #command: string;
  readonly #args: readonly string[];
  readonly #timeoutMs: number;

  #running = false;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> | undefined;
  #pollAbort: AbortController | undefined;
  #seq = 0;
  #latest: SqueueSnapshot | undefined;
  #waiters = new Set<Waiter>();

  constructor(options: SqueueMonitorOptions) {
    super();
    if (!(options.intervalMs > 0)) {
      throw new RangeError(`SqueueMonitor: intervalMs must be > 0, got ${options.intervalMs}`);
    }
    this.#intervalMs = options.intervalMs;
    this.#runner = options.runner ?? spawnCommand;
    this.#command = options.command ?? 'squeue';
    this.#timeoutMs = options.timeoutMs ?? Math.max(2 * options.intervalMs, 60_000);
    this.#args = Object.freeze([
      ...(options.allPartitions ? ['--all'] : []),
      `--user=${options.user ?? currentUser()}`,
      '--noheader',
      `--format=${SQUEUE_FORMAT}`,
    ]);
  }

  /** The squeue arguments this monitor uses. */
  get args(): readonly string[] {
    return this.#args;
  }

  /** True between {@link start} and {@link stop}. */
  get running(): boolean {
    return this.#running;
  }

  /** The last successful snapshot, if any. It may be stale: prefer {@link nextSnapshot}. */
  get latest(): SqueueSnapshot | undefined {
    return this.#latest;
  }

  /** Starts polling (the first poll right away). Does nothing if already running. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#poll();
  }

  /**
   * Stops polling: cancels the timer, kills a squeue in progress, and rejects
   * every pending {@link nextSnapshot} with {@link SqueueMonitorStoppedError}.
   * Resolves once the squeue in progress, if any, has ended. Idempotent;
   * {@link start} may be called again afterwards.
   */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#pollAbort?.abort(new SqueueMonitorStoppedError());
    for (const waiter of [...this.#waiters]) {
      this.#removeWaiter(waiter);
      waiter.reject(new SqueueMonitorStoppedError());
    }
    await this.#inFlight;
  }

  /**
   * Resolves with the first successful snapshot from a poll that *starts*
   * after this call, so it reflects everything done before the call (e.g. a
   * job just submitted). Before {@link start}, waits for the first poll.
   *
   * @throws the signal's reason if `signal` aborts first;
   *   {@link SqueueMonitorStoppedError} if the monitor stops first.
   */
  nextSnapshot(signal?: AbortSignal): Promise<SqueueSnapshot> {
    return new Promise<SqueueSnapshot>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const waiter: Waiter = { minSeq: this.#seq + 1, resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          this.#removeWaiter(waiter);
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.add(waiter);
    });
  }

  /** Waits for the next snapshot (see {@link nextSnapshot}) and tells whether it lists `name`. */
  async hasJob(name: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.nextSnapshot(signal)).jobs.has(name);
  }

  #removeWaiter(waiter: Waiter): void {
    this.#waiters.delete(waiter);
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }

  #poll(): void {
    const seq = ++this.#seq;
    const startedAt = Date.now();
    const abort = new AbortController();
    this.#pollAbort = abort;
    const options = { signal: abort.signal, timeoutMs: this.#timeoutMs };
    // new Promise() turns a runner that throws synchronously into a failed poll.
    const inFlight: Promise<void> = new Promise<RunResult>((resolve) =>
      resolve(this.#runner(this.#command, this.#args, options)),
    )
      .then(
        (result) => {
          if (abort.signal.aborted) return;
          if (result.code !== 0) {
            const why = result.stderr.trim() || `exit ${result.code ?? result.signal}`;
            this.#failed(new Error(`${this.#command} failed: ${why}`));
            return;
          }
          const jobs = parseSqueue(result.stdout, (line) => log('ignoring unparsable squeue line %o', line));
          this.#succeeded({ seq, startedAt, finishedAt: Date.now(), jobs });
        },
        (err: unknown) => {
          if (abort.signal.aborted) return;
          this.#failed(err instanceof Error ? err : new Error(String(err)));
        },
      )
      .finally(() => {
        // A stop() and start() may have begun another poll meanwhile.
        if (this.#pollAbort === abort) this.#pollAbort = undefined;
        if (this.#inFlight === inFlight) this.#inFlight = undefined;
        if (this.#running && !abort.signal.aborted) this.#schedule(startedAt);
      });
    this.#inFlight = inFlight;
  }

  #schedule(lastStartedAt: number): void {
    const elapsed = Math.max(0, Date.now() - lastStartedAt);
    // Like a ticker that drops the ticks it missed: the next interval boundary.
    const delay = this.#intervalMs - (elapsed % this.#intervalMs);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#running) this.#poll();
    }, delay);
  }

  #succeeded(snapshot: SqueueSnapshot): void {
    this.#latest = snapshot;
    for (const waiter of [...this.#waiters]) {
      if (waiter.minSeq <= snapshot.seq) {
        this.#removeWaiter(waiter);
        waiter.resolve(snapshot);
      }
    }
    this.#emitSafely('snapshot', () => this.emit('snapshot', snapshot));
  }

  // A throwing listener must not break the poll loop (or surface as an
  // unhandled rejection of the poll promise).
  #emitSafely(event: keyof SqueueMonitorEvents, emit: () => void): void {
    try {
      emit();
    } catch (err) {
      log('%s listener threw: %O', event, err);
    }
  }

  #failed(err: Error): void {
    log('squeue poll failed: %s', err.message);
    this.#emitSafely('pollError', () => this.emit('pollError', err));
  }
}
