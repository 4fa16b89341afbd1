/**
 * Turns Dispatcher and runner events into output lines and keeps the counts
 * for the status line: `queued N, running N, done N (complete N,
 * cancelled N)`, followed, when they apply, by what holds containers back
 * on a busy cluster: the cap (`at quota`), the API's back-pressure, locking
 * stopped for a configuration error, and for batch runners the scheduler's
 * pending reasons and paused submissions.
 *
 * @module
 */
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import type { Runner, RunnerStatus } from '../dispatcher/runner.js';
import { formatBytes } from '../runners/local/resources.js';
import type { ContainerState } from '../types.js';
import type { Output } from './output.js';

/** How many recently finished UUIDs are remembered so a container reported twice is counted once. */
const RECENT_FINAL = 4096;
/** Pending reasons shown by name; the rest are summed as `other`. */
const MAX_REASONS = 4;
/** Longest reason (or stop cause) shown: they come from the scheduler's output. */
const MAX_REASON_TEXT = 60;

/** The numbers of the status line. */
export interface StatusCounts {
  /** Queued with priority > 0 (last poll), plus locked ones waiting for resources here. */
  queued: number;
  /** crunch-run processes alive. */
  running: number;
  /** Containers that reached a final state while this dispatcher had them. */
  done: number;
  complete: number;
  cancelled: number;
  /** Queued containers were left unlocked in the last poll: `--max-jobs` or the runner's capacity is reached. */
  atQuota?: boolean;
  /** The API answered 503/429: locking is paused until this time (epoch ms). */
  lockingPausedUntil?: number;
  /** Lock requests allowed in flight now, when the API's back-pressure has lowered it: [now, configured]. */
  lockConcurrency?: readonly [number, number];
  /** Why locking stopped for good (a configuration or environment error); a restart is needed. */
  lockingStopped?: string;
  /** Why locking and adopting are held for now (e.g. waiting for the cluster lock). */
  lockingHeld?: string;
  /** Batch runners: the scheduler's name, e.g. `Slurm`. */
  scheduler?: string;
  /** Batch runners: our jobs pending in the scheduler's queue. */
  pending?: number;
  /**
   * Batch runners: pending jobs by the scheduler's reason, most frequent
   * first; at most {@link MAX_REASONS} names, the rest summed as `other`.
   */
  pendingReasons?: ReadonlyArray<readonly [string, number]>;
  /** Batch runners: the scheduler refused a submission for a limit, so submissions are paused. */
  submissionsPaused?: boolean;
}

/** Seconds from now until `until`, at least 1. */
function secondsUntil(until: number, now: number): number {
  return Math.max(1, Math.ceil((until - now) / 1000));
}

/**
 * `queued 3, running 2, done 5 (complete 4, cancelled 1)`, then whatever
 * holds containers back, e.g. `; at quota (max-jobs or runner capacity
 * reached); API overloaded: locking paused for 8 s, lock concurrency 2 of 8;
 * Slurm: 6 pending (Priority 4, Resources 2), submissions paused (at quota)`.
 */
export function statusLine(c: StatusCounts, now: number = Date.now()): string {
  const parts = [`queued ${c.queued}, running ${c.running}, done ${c.done} (complete ${c.complete}, cancelled ${c.cancelled})`];
  if (c.lockingStopped !== undefined) parts.push(`locking stopped (${c.lockingStopped}): restart once fixed`);
  if (c.lockingHeld !== undefined) parts.push(`not locking: ${c.lockingHeld}`);
  if (c.atQuota) parts.push('at quota (max-jobs or runner capacity reached)');
  const api: string[] = [];
  if (c.lockingPausedUntil !== undefined) api.push(`locking paused for ${secondsUntil(c.lockingPausedUntil, now)} s`);
  if (c.lockConcurrency) api.push(`lock concurrency ${c.lockConcurrency[0]} of ${c.lockConcurrency[1]}`);
  if (api.length > 0) parts.push(`API overloaded: ${api.join(', ')}`);
  if (c.scheduler !== undefined && (c.pending || c.submissionsPaused)) {
    const reasons = c.pendingReasons?.length ? ` (${c.pendingReasons.map(([r, n]) => `${r} ${n}`).join(', ')})` : '';
    const batch = [...(c.pending ? [`${c.pending} pending${reasons}`] : []), ...(c.submissionsPaused ? ['submissions paused (at quota)'] : [])];
    parts.push(`${c.scheduler}: ${batch.join(', ')}`);
  }
  return parts.join('; ');
}

/** Text from the scheduler or an error, made fit for one short status item. */
function shortText(text: string): string {
  // eslint-disable-next-line no-control-regex
  const t = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return t.length > MAX_REASON_TEXT ? `${t.slice(0, MAX_REASON_TEXT - 1)}…` : t || 'no reason given';
}

/** A runner's pending jobs counted by reason (cut to one short line each), most frequent first, bounded to {@link MAX_REASONS} names plus `other`. */
export function pendingReasons(reasons: Readonly<Record<string, number>>): Array<[string, number]> {
  const by = new Map<string, number>();
  for (const [reason, n] of Object.entries(reasons)) {
    const r = shortText(reason);
    by.set(r, (by.get(r) ?? 0) + n);
  }
  const sorted = [...by].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (sorted.length <= MAX_REASONS) return sorted;
  const other = sorted.slice(MAX_REASONS).reduce((n, [, k]) => n + k, 0);
  return [...sorted.slice(0, MAX_REASONS), ['other', other]];
}

/** `<uuid> finished: <state>`, with the exit code when there is one. */
function finishedText(uuid: string, state: string, exitCode: number | null): string {
  return `${uuid} finished: ${state}${exitCode !== null ? ` (exit code ${exitCode})` : ''}`;
}

/** Containers locked here but waiting (for resources, or in the scheduler's queue): see {@link RunnerStatus.waiting}. */
function waitingOf(st: RunnerStatus | undefined): number {
  if (!st) return 0;
  return st.waiting ?? Math.max(0, st.containers - st.running);
}

/**
 * Prints events as they happen and counts outcomes. Dispatcher events are
 * wired by the constructor; {@link watch} adds those of the runner, read
 * through the {@link Runner} interface alone (its `status` and `events`).
 */
export class Reporter {
  readonly #out: Output;
  /**
   * Containers counted lately, so one reported twice (by the dispatcher and
   * by the runner) is counted once. Both reports come within moments, so a
   * bounded window suffices; a long-running service does not keep one entry
   * per container for ever.
   */
  readonly #recentFinal = new Set<string>();
  #complete = 0;
  #cancelled = 0;

  /** Queued containers of the last poll that this dispatcher did not lock in it. */
  #queued = 0;
  #lockedThisCycle = 0;
  readonly #d: Dispatcher;
  /** The lock concurrency configured (before any back-pressure lowered it). */
  readonly #lockConcurrency: number;
  #runner: Pick<Runner, 'status'> | undefined;

  constructor(out: Output, d: Dispatcher) {
    this.#out = out;
    this.#d = d;
    this.#lockConcurrency = d.status.lockConcurrency;
    const o = out;

    d.on('identified', (auth) => o.event('identified', `dispatching as token ${auth.uuid} on ${d.client.apiHost}`, { token_uuid: auth.uuid, api_host: d.client.apiHost }));
    // A poll counts the queue before locking from it; the locks of the same
    // cycle come before its 'cycle' event, so they can be taken off.
    d.on('cycle', (st) => {
      this.#queued = Math.max(0, st.queued - this.#lockedThisCycle);
      this.#lockedThisCycle = 0;
    });
    d.on('locked', () => this.#lockedThisCycle++);
    d.on('locked', (c) => o.event('locked', `${c.uuid} locked (priority ${c.priority})`, { uuid: c.uuid, priority: c.priority }));
    d.on('adopted', (c) =>
      o.event('adopted', `${c.uuid} adopted in state ${c.state} (locked by this token before a restart)`, { uuid: c.uuid, state: c.state, priority: c.priority }),
    );
    // Containers being killed: their release is the kill's, not a runner's leftover.
    const killing = new Set<string>();
    d.on('kill', (uuid, reason) => {
      killing.add(uuid);
      o.event('kill', `${uuid} kill requested (${reason}): stopping its work now`, { uuid, reason });
    });
    d.on('released', (uuid, action, state) => {
      if (action === 'cancelled') this.#setFinal(uuid, 'Cancelled');
      if (killing.delete(uuid)) {
        const text = action === 'unlocked' ? 'unlocked: it had not started, so it is Queued again' : `${action} (it was ${state})`;
        o.event('released', `${uuid} ${text}`, { uuid, action, state, kill: true });
        return;
      }
      o.event('released', `${uuid} ${action}: it was still ${state} after its runner returned`, { uuid, action, state });
    });
    d.on('settled', (uuid) => killing.delete(uuid));
    d.on('warning', (message) => o.warn(message));
    // The dispatcher sees every container end, whatever the runner reports.
    d.on('stream-ended', (uuid, _reason, c) => {
      if (c && (c.state === 'Complete' || c.state === 'Cancelled')) this.#setFinal(uuid, c.state);
    });
    // 'stopping' is not shown: whoever stops the dispatcher (a signal handler, the demo) says why.
  }

  /**
   * Adds the lines of the runner's events and its counts to the status
   * line. Each runner emits the events of its kind (see `RunnerEvents`):
   * the local runner its crunch-run processes, a batch runner its
   * scheduler's side (`status.scheduler` names the scheduler).
   */
  watch(runner: Pick<Runner, 'status' | 'events'>): this {
    const o = this.#out;
    const d = this.#d;
    const events = runner.events;
    const scheduler = runner.status?.scheduler;
    const name = scheduler ?? 'the scheduler';
    this.#runner = runner;

    events?.on('waiting', (e) => o.event('waiting', `${e.uuid} ${e.message}`, { uuid: e.uuid, vcpus: e.need.vcpus, ram: e.need.ram, gpus: e.need.gpus?.count ?? 0 }));
    events?.on('started', (e) => {
      const gpus = e.gpuIds.length ? `, GPU ${e.gpuIds.join(',')}` : '';
      o.event('started', `${e.uuid} started crunch-run, pid ${e.pid} (${e.vcpus} vCPU, ${formatBytes(e.ram)} RAM${gpus})`, {
        uuid: e.uuid,
        pid: e.pid,
        vcpus: e.vcpus,
        ram: e.ram,
        gpus: e.gpuIds,
      });
    });
    // The runner redacts each line before it cuts an over-long one; Output redacts again whole.
    events?.on('adopted', (e) => o.event('adopted', `${e.uuid} following crunch-run pid ${e.pid}, started before a restart`, { uuid: e.uuid, pid: e.pid }));
    events?.on('output', (e) => o.event('output', `${e.uuid} | ${e.line}`, { uuid: e.uuid, pid: e.pid, stream: e.stream, line: e.line }));
    events?.on('signalled', (e) =>
      o.event('signalled', `${e.uuid} sent ${e.signal} to crunch-run pid ${e.pid}: ${e.reason}`, { uuid: e.uuid, pid: e.pid, signal: e.signal, reason: e.reason }),
    );
    events?.on('exited', (e) => {
      // People get the outcome from "finished"; collectors get the raw exit too.
      if (o.json) o.event('exited', `${e.uuid} crunch-run pid ${e.pid} ${e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`}`, { uuid: e.uuid, pid: e.pid, code: e.code, signal: e.signal });
    });
    events?.on('outcome', (e) => {
      this.#setFinal(e.uuid, e.state);
      o.event('finished', finishedText(e.uuid, e.state, e.exitCode), {
        uuid: e.uuid,
        state: e.state,
        exit_code: e.exitCode,
        ...(e.process ? { process_code: e.process.code, process_signal: e.process.signal } : {}),
      });
    });
    events?.on('cancelled', (e) => o.warn(e.message, { uuid: e.uuid, reason: e.reason }, 'cancelled'));
    events?.on('rejected', (e) => o.warn(e.message, { uuid: e.uuid, reason: e.reason }, 'rejected'));
    events?.on('unlocked', (e) => o.event('unlocked', e.message, { uuid: e.uuid, reason: e.reason }));
    events?.on('skipped', (e) => o.event('skipped', e.message, { uuid: e.uuid, reason: e.reason }));

    // A scheduler's job ran elsewhere: the dispatcher's poll is what sees the container end.
    if (scheduler !== undefined) {
      d.on('stream-ended', (uuid, reason, c) => {
        if (reason !== 'finished' || !c) return;
        o.event('finished', finishedText(uuid, c.state, c.exit_code ?? null), { uuid, state: c.state, exit_code: c.exit_code ?? null });
      });
    }
    events?.on('submitted', (uuid, result, jobId) => {
      if (result !== 'error') o.event('submitted', `${uuid} submitted to ${name}${jobId !== undefined ? ` as job ${jobId}` : ''}`, { uuid, job_id: jobId ?? null });
    });
    events?.on('lost', (e) => {
      if (e.action !== 'none') o.warn(`${e.uuid} ${e.action}: ${e.reason}`, { uuid: e.uuid, action: e.action, job_id: e.jobId ?? null, reason: e.reason }, 'lost');
    });
    events?.on('orphans', (uuids) =>
      o.event('orphans', `found ${uuids.length} job(s) of this cluster in the ${name} queue at startup; following them`, { uuids }),
    );
    events?.on('warning', (message) => o.warn(message));
    return this;
  }

  #setFinal(uuid: string, state: ContainerState): void {
    if (this.#recentFinal.has(uuid)) return;
    this.#recentFinal.add(uuid);
    if (this.#recentFinal.size > RECENT_FINAL) this.#recentFinal.delete(this.#recentFinal.values().next().value as string);
    if (state === 'Complete') this.#complete++;
    else if (state === 'Cancelled') this.#cancelled++;
  }

  /** UUIDs remembered for de-duplication now (bounded; for tests). */
  get remembered(): number {
    return this.#recentFinal.size;
  }

  /** The current counts, with what holds containers back now (read fresh each time: nothing is kept per container or reason). */
  counts(): StatusCounts {
    const st = this.#d.status;
    const rs = this.#runner?.status;
    const c: StatusCounts = {
      queued: this.#queued + waitingOf(rs),
      running: rs?.running ?? 0,
      done: this.#complete + this.#cancelled,
      complete: this.#complete,
      cancelled: this.#cancelled,
      atQuota: st.atQuota,
    };
    if (st.paused !== undefined) c.lockingStopped = shortText(st.paused);
    if (st.held !== undefined) c.lockingHeld = shortText(st.held);
    if (st.pausedUntil !== undefined) c.lockingPausedUntil = st.pausedUntil;
    if (st.lockConcurrency < this.#lockConcurrency) c.lockConcurrency = [st.lockConcurrency, this.#lockConcurrency];
    if (rs?.scheduler !== undefined) {
      c.scheduler = rs.scheduler;
      c.pending = rs.pending ?? 0;
      c.pendingReasons = pendingReasons(rs.pendingReasons ?? {});
      c.submissionsPaused = rs.atQuota ?? false;
    }
    return c;
  }

  /** Prints the status line (JSON: the counts, `at_quota`, `api`, and for batch runners `scheduler`). */
  printStatus(): void {
    const c = this.counts();
    const fields: Record<string, unknown> = { queued: c.queued, running: c.running, done: c.done, complete: c.complete, cancelled: c.cancelled, at_quota: c.atQuota ?? false };
    fields.api = {
      overloaded: c.lockingPausedUntil !== undefined || c.lockConcurrency !== undefined,
      locking_paused_until: c.lockingPausedUntil !== undefined ? new Date(c.lockingPausedUntil).toISOString() : null,
      lock_concurrency: c.lockConcurrency?.[0] ?? this.#lockConcurrency,
      max_lock_concurrency: this.#lockConcurrency,
    };
    fields.locking_stopped = c.lockingStopped ?? null;
    fields.locking_held = c.lockingHeld ?? null;
    if (c.scheduler !== undefined) {
      fields.scheduler = {
        name: c.scheduler,
        pending: c.pending ?? 0,
        pending_reasons: Object.fromEntries(c.pendingReasons ?? []),
        submissions_paused: c.submissionsPaused ?? false,
      };
    }
    this.#out.event('status', statusLine(c), fields);
  }
}
