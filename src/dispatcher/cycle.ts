/**
 * The poll cycle: one turn of the dispatcher's loop. It reads the queue
 * (queue.ts), applies each record to the container it is about (the newest
 * record goes to a held container's runner; a container this token holds
 * but does not track is adopted; a Queued one is a lock candidate), has a
 * direct read confirm every stream end a list answer suggests (confirm.ts),
 * leaves the candidates to the locker, retries failed cleanups, and reports
 * the cycle (the `cycle` event, the counters, and `idle` when there was
 * nothing to do).
 *
 * @module
 */
import { deferred, type Deferred } from '../deferred.js';
import { logger } from '../log.js';
import type { Container } from '../types.js';
import { describeError } from '../util/errors.js';
import { redactAndCut, type Redactor } from '../util/redact.js';
import { isContainerUuid } from '../uuid.js';
import type { ContainerApi } from './api.js';
import { confirmByDirectRead } from './confirm.js';
import type { Locker } from './locker.js';
import type { DispatcherEvents } from './options.js';
import { changedSince, fetchFull } from './poll.js';
import type { ContainerQueue } from './queue.js';
import { LIVE, deepFreeze, versionOf, type Supervisor } from './supervisor.js';
import type { Throttle } from './throttle.js';
import type { CycleCounters } from './view.js';

const log = logger('dispatcher');

/** Most distinct malformed UUIDs remembered, so each is warned about once. */
const MAX_BAD_UUIDS = 1_000;

/** What the poll cycle needs of its Dispatcher. */
export interface CycleHost {
  readonly api: ContainerApi;
  /** Records per full-record read. */
  readonly batchSize: number;
  readonly redactor: Redactor;
  readonly queue: Pick<ContainerQueue, 'read' | 'byUuid'>;
  readonly supervisor: Pick<Supervisor, 'trackers' | 'retired' | 'pendingCleanups' | 'cleanup' | 'busy' | 'start' | 'endStream'>;
  readonly locker: Pick<Locker, 'held' | 'inFlight' | 'lockInOrder' | 'overloadedBy'>;
  /** `minRetryPeriod` per container (adoptions are throttled like locks). */
  readonly throttle: Throttle;
  /** Where the cycle's counters go. */
  readonly counters: CycleCounters;
  /** This token's UUID (the cycle runs only once it is known). */
  me(): string;
  /** Told about a failed list or read of containers. */
  listFailed(err: unknown): void;
  /** Logs and emits a warning (redacted). */
  warn(message: string): void;
  /** Emits an event without letting a listener break the bookkeeping. */
  emit<K extends keyof DispatcherEvents>(name: K, ...args: DispatcherEvents[K]): void;
  /** Emits `cycle` with the status; a listener that throws ends the run. */
  cycleEnded(): void;
}

/** The poll cycles of one Dispatcher, and the waiters for an idle one. */
export class PollCycle {
  readonly #host: CycleHost;
  #cycle = 0;
  /** Containers of this cycle that wait to be adopted (throttled). */
  #deferredAdoptions = 0;
  readonly #badUuids = new Set<string>();
  /**
   * Tracked containers a list answer of this cycle says are gone, not ours,
   * no longer live, or newly asked to stop (priority 0): each waits for a
   * direct read (see confirm.ts) before a stream ends or a runner sees it.
   */
  readonly #suspects = new Set<string>();
  #idleWaiters: Array<{ after: number; wait: Deferred<void> }> = [];
  #finished = false;

  constructor(host: CycleHost) {
    this.#host = host;
  }

  /** What `Dispatcher.idle()` returns (see there). */
  idle(): Promise<void> {
    if (this.#finished) return Promise.resolve();
    const wait = deferred();
    this.#idleWaiters.push({ after: this.#cycle, wait });
    return wait.promise;
  }

  /** No cycle comes any more: every idle waiter, present and future, resolves. */
  finish(): void {
    this.#finished = true;
    for (const w of this.#idleWaiters.splice(0)) w.wait.resolve();
  }

  /**
   * One poll. A regular one is a sweep or an incremental poll (see
   * watermark.ts); one woken by events between regular ones reads only the
   * containers the events named. Every kind also lists the Queued
   * containers: lock order is decided over the whole queue.
   */
  async pollOnce(regular: boolean, signal: AbortSignal): Promise<void> {
    const host = this.#host;
    const sup = host.supervisor;
    const cycle = ++this.#cycle;
    this.#deferredAdoptions = 0;
    this.#suspects.clear();
    const me = host.me();
    // Trackers whose cleanup finished before this cycle's queries started can
    // go: every record from here on was read after their last API change.
    for (const uuid of sup.retired.splice(0)) {
      if (sup.trackers.get(uuid)?.phase === 'retired') sup.trackers.delete(uuid);
    }
    const snapshot = await host.queue.read(regular, { me, holds: (uuid) => sup.trackers.has(uuid), size: sup.trackers.size }, signal);
    if (signal.aborted) return;
    let healthy = snapshot.complete;
    const sweep = snapshot.sweep;
    const applied = await this.#applySummaries(snapshot.records, cycle, signal, snapshot.fullMine);
    if (signal.aborted) return;
    healthy &&= applied.ok;
    const candidates = applied.candidates;
    host.counters.queued = snapshot.queued;
    const handOver = host.locker.lockInOrder(candidates, signal);

    // Tracked containers neither query returned: ask for them by UUID. Only
    // a sweep can tell: the other polls do not list unchanged containers.
    if (healthy && sweep) {
      const missed: string[] = [];
      for (const t of sup.trackers.values()) if (t.seenCycle !== cycle && t.phase !== 'retired') missed.push(t.uuid);
      const got = await host.queue.byUuid(missed, signal);
      healthy &&= got.ok;
      for (const c of got.items) this.#consider(c, cycle);
      // "Not returned" means "gone" only when every query of the sweep
      // succeeded: after a failed one we did not see everything.
      if (healthy) {
        for (const uuid of missed) {
          const t = sup.trackers.get(uuid);
          if (t && t.seenCycle !== cycle && !t.stream.ended) this.#suspects.add(uuid);
        }
      }
    }
    // No stream ends on a list answer alone: a direct read confirms each.
    if (this.#suspects.size > 0) healthy = (await this.#confirmEnds(cycle, signal)) && healthy;
    snapshot.done(healthy);
    const pending = await handOver;
    if (signal.aborted) return;
    for (const t of [...sup.pendingCleanups]) void sup.cleanup(t);
    host.counters.cycles = cycle;
    host.counters.healthy = healthy;
    host.cycleEnded();
    const idle = healthy && pending === 0 && this.#deferredAdoptions === 0 && sup.busy() + host.locker.inFlight === 0;
    if (idle) this.#becameIdle(cycle);
  }

  #becameIdle(cycle: number): void {
    const ready = this.#idleWaiters.filter((w) => cycle > w.after);
    this.#idleWaiters = this.#idleWaiters.filter((w) => cycle <= w.after);
    for (const w of ready) w.wait.resolve();
    this.#host.emit('idle');
  }

  /**
   * Applies the listed summaries. A tracked container whose summary is
   * unchanged is only marked as seen; one that changed, and one to adopt,
   * is read in full first (batched `uuid in` requests), so runners only
   * ever see full records; if that read fails it waits for the next cycle
   * (`ok: false` makes this one incomplete). Returns the lock candidates.
   */
  async #applySummaries(
    summaries: Iterable<Container>,
    cycle: number,
    signal: AbortSignal,
    /** The records to adopt are full already (nothing was tracked when they were listed). */
    adoptFull = false,
  ): Promise<{ ok: boolean; candidates: Container[] }> {
    const host = this.#host;
    const trackers = host.supervisor.trackers;
    const me = host.me();
    const wanted: string[] = [];
    const rest: Container[] = [];
    for (const c of summaries) {
      // Only valid UUIDs are ever tracked, so the lookup needs no check of its own.
      const t = trackers.get(c.uuid);
      if (t?.phase === 'running') {
        if (changedSince(c, t.record)) wanted.push(c.uuid);
        else t.seenCycle = cycle;
      } else if (!t && LIVE.has(c.state) && (!c.locked_by_uuid || c.locked_by_uuid === me) && isContainerUuid(c.uuid) && !adoptFull) {
        wanted.push(c.uuid);
      } else {
        rest.push(c);
      }
    }
    const full = await fetchFull(host.api, wanted, host.batchSize, signal, (err) => host.listFailed(err));
    const candidates: Container[] = [];
    for (const uuid of wanted) {
      const record = full.records.get(uuid);
      if (record) {
        if (this.#consider(record, cycle)) candidates.push(record);
      } else {
        // Not read (the request failed, or it was deleted just now): the next cycle looks again.
        const t = trackers.get(uuid);
        if (t) t.seenCycle = cycle;
      }
    }
    for (const c of rest) if (this.#consider(c, cycle)) candidates.push(c);
    return { ok: full.ok, candidates };
  }

  /**
   * Applies a record to the container's tracker, if it has one. Returns true
   * if the record is a candidate for locking (untracked, Queued).
   */
  #consider(c: Container, cycle: number, confirmed = false): boolean {
    const host = this.#host;
    const sup = host.supervisor;
    if (!isContainerUuid(c.uuid)) {
      // Never let a hostile uuid reach a runner, a URL or a command line; say so once.
      if (!this.#badUuids.has(String(c.uuid)) && this.#badUuids.size < MAX_BAD_UUIDS) {
        this.#badUuids.add(String(c.uuid));
        host.warn(`ignoring a container record with an invalid uuid ${redactAndCut(JSON.stringify(String(c.uuid)), 80, host.redactor)}`);
      }
      return false;
    }
    const me = host.me();
    const t = sup.trackers.get(c.uuid);
    // A list answer about a tracked container is applied only while it says
    // "still ours and live" and does not newly ask it to stop (priority 0
    // makes a runner stop the container); anything else waits for a direct read.
    const stopsIt = !(LIVE.has(c.state) && (!c.locked_by_uuid || c.locked_by_uuid === me)) || (c.priority === 0 && t?.record.priority !== 0);
    if (t && t.phase === 'running' && !confirmed && stopsIt) {
      t.seenCycle = cycle;
      if (!t.stream.ended) this.#suspects.add(c.uuid);
      return false;
    }
    if (c.locked_by_uuid && c.locked_by_uuid !== me) {
      log('ignoring %s locked by %s', c.uuid, c.locked_by_uuid);
      if (t) {
        t.seenCycle = cycle;
        sup.endStream(t, 'locked-by-other', deepFreeze(c));
      }
      return false;
    }
    if (t) {
      t.seenCycle = cycle;
      // A retired tracker's records may predate its cleanup; ignore them.
      if (t.phase !== 'running') return false;
      const record = deepFreeze(c);
      t.record = record;
      if (LIVE.has(c.state)) {
        const v = versionOf(c);
        if (v === undefined || v !== t.version) {
          t.version = v;
          t.stream.push(record);
        }
      } else {
        log('update has %s in state %s, closing tracker', c.uuid, c.state);
        sup.endStream(t, c.state === 'Queued' ? 'requeued' : 'finished', record);
      }
      return false;
    }
    if (LIVE.has(c.state)) {
      // Locked by this token but not tracked: a restart, or a lock whose
      // answer was lost. Throttled like a lock, so a container whose runner
      // keeps returning at once is not restarted on every poll.
      if (host.locker.held !== undefined) return false;
      if (!host.throttle.check(c.uuid)) {
        this.#deferredAdoptions++;
        return false;
      }
      sup.start(c, 'adopted');
      sup.trackers.get(c.uuid)!.seenCycle = cycle;
      return false;
    }
    return c.state === 'Queued' && c.priority > 0;
  }

  /**
   * Reads each suspect directly (bounded, see confirm.ts) and lets only that
   * record decide: gone (404) ends the stream as `vanished`, a record is
   * applied as usual (ending the stream only if it, too, says the container
   * is no longer ours and live). Returns false if any read failed or was
   * left for the next cycle: the cycle is incomplete.
   */
  async #confirmEnds(cycle: number, signal: AbortSignal): Promise<boolean> {
    const host = this.#host;
    const uuids = [...this.#suspects];
    this.#suspects.clear();
    const answers = await confirmByDirectRead(host.api, uuids, signal, (err) => {
      host.warn(`error confirming a container's state: ${describeError(err)}`);
      host.locker.overloadedBy(err);
    });
    let complete = true;
    for (const [uuid, a] of answers) {
      const t = host.supervisor.trackers.get(uuid);
      if (!t || t.phase !== 'running' || t.stream.ended) continue;
      if (a.kind === 'gone') {
        log('Container %s no longer exists, stopping tracking.', uuid);
        host.supervisor.endStream(t, 'vanished');
      } else if (a.kind === 'record') {
        this.#consider(a.record, cycle, true);
      } else {
        complete = false;
      }
    }
    return complete;
  }
}
