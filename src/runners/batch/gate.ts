/**
 * Back-pressure shared by every container of one runner: when sbatch is
 * refused because a submit limit is reached (per user, account, QOS or
 * cluster), submitting more only earns more refusals, so submissions pause
 * until the queue has room again.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import { realClock, type Clock } from '../../util/sleep.js';
import { startTimer, type CancelTimer } from './timer.js';

/** How a submission that went through the gate turned out. */
export type GateOutcome =
  /** sbatch accepted the job: the limit no longer bites. */
  | 'submitted'
  /** sbatch was refused because of a submit limit. */
  | 'backpressure'
  /** Anything else: another failure, or no sbatch was run after all. Says nothing about the limit. */
  | 'other';

/** Permission to run one sbatch; report how it went exactly once (later calls are ignored). */
export interface GateTicket {
  done(outcome: GateOutcome): void;
}

/** Events of {@link SubmitGate}. */
export interface SubmitGateEvents {
  paused: [];
  /** A probe submission is allowed through. */
  probing: [why: 'job-left' | 'timer'];
  resumed: [];
}

interface Waiter {
  grant: (ticket: GateTicket) => void;
}

/**
 * Open until a submission reports `backpressure`. Then it is paused: callers
 * of {@link enter} wait. It lets exactly one submission through (a probe)
 * when one of the jobs that were queued at the time of the pause has left
 * the queue, or after `probeDelay` ms, whichever comes first. If the probe is
 * accepted, the gate opens and every waiter goes; if it is refused, the gate
 * pauses again; if it tells nothing (another failure, or no sbatch), the next
 * waiter probes instead.
 *
 * @example
 * const ticket = await gate.enter(signal);
 * let outcome: GateOutcome = 'other';
 * try { outcome = await submit(); } finally { ticket.done(outcome); }
 */
export class SubmitGate extends EventEmitter<SubmitGateEvents> {
  readonly #probeDelay: number;
  #state: 'open' | 'paused' | 'probing' = 'open';
  /** The probe ticket in flight, if any. */
  #probe: GateTicket | undefined;
  #waiters: Waiter[] = [];
  #timer: CancelTimer | undefined;
  readonly #clock: Clock;
  /** Our jobs queued when the gate paused. */
  #queuedAtPause = new Set<string>();
  #latestJobs: ReadonlySet<string> = new Set();
  /** Incremented by every pause: tickets from before it no longer count. */
  #generation = 0;

  /** @param clock - Where the probe timer runs; default the real clock. */
  constructor(probeDelay: number, clock: Clock = realClock) {
    super();
    this.#probeDelay = probeDelay;
    this.#clock = clock;
  }

  /** `open`, `paused` (nobody may submit) or `probing` (one submission may go). */
  get state(): 'open' | 'paused' | 'probing' {
    return this.#state;
  }

  /** Callers waiting to submit. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * Resolves with a ticket once a submission may go; at once while the gate
   * is open. Rejects with the signal's reason if it aborts first.
   */
  enter(signal?: AbortSignal): Promise<GateTicket> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#state === 'open') return Promise.resolve(this.#freeTicket());
    if (this.#state === 'probing' && !this.#probe) return Promise.resolve(this.#probeTicket());
    return new Promise<GateTicket>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (ticket) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(ticket);
        },
      };
      const onAbort = (): void => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /**
   * Tells the gate which of our jobs the queue holds now (call it with every
   * squeue snapshot). While paused, a job that was queued at the pause (or
   * seen since) and is gone now lets a probe through.
   */
  observe(jobNames: Iterable<string>): void {
    const now = new Set(jobNames);
    this.#latestJobs = now;
    if (this.#state !== 'paused') return;
    for (const name of this.#queuedAtPause) {
      if (!now.has(name)) {
        this.#startProbe('job-left');
        return;
      }
    }
    // Jobs submitted just before the pause show up only now: count them too.
    this.#queuedAtPause = now;
  }

  /** Stops the probe timer. Pending {@link enter} calls stay pending: abort their signals. */
  close(): void {
    this.#timer?.();
    this.#timer = undefined;
  }

  #freeTicket(): GateTicket {
    let used = false;
    const generation = this.#generation;
    return {
      done: (outcome) => {
        if (used) return;
        used = true;
        // Submissions that were under way when the gate paused say nothing
        // about the limit now, whatever their outcome: only probes decide.
        if (outcome === 'backpressure' && generation === this.#generation) this.#pause();
      },
    };
  }

  #probeTicket(): GateTicket {
    let used = false;
    const ticket: GateTicket = {
      done: (outcome) => {
        if (used) return;
        used = true;
        if (this.#probe !== ticket) return;
        this.#probe = undefined;
        if (outcome === 'submitted') this.#open();
        else if (outcome === 'backpressure') this.#pause();
        else this.#grantProbe();
      },
    };
    this.#probe = ticket;
    return ticket;
  }

  #pause(): void {
    this.#generation++;
    this.#state = 'paused';
    this.#queuedAtPause = new Set(this.#latestJobs);
    this.#timer?.();
    this.#timer = startTimer(this.#clock, this.#probeDelay, () => {
      this.#timer = undefined;
      if (this.#state === 'paused') this.#startProbe('timer');
    });
    this.emit('paused');
  }

  #startProbe(why: 'job-left' | 'timer'): void {
    this.#timer?.();
    this.#timer = undefined;
    this.#state = 'probing';
    this.emit('probing', why);
    this.#grantProbe();
  }

  /** Gives the probe to the next waiter, if any; otherwise the next {@link enter} gets it. */
  #grantProbe(): void {
    const next = this.#waiters.shift();
    if (next) next.grant(this.#probeTicket());
  }

  #open(): void {
    this.#timer?.();
    this.#timer = undefined;
    this.#state = 'open';
    this.#probe = undefined;
    this.emit('resumed');
    for (const w of this.#waiters.splice(0)) w.grant(this.#freeTicket());
  }
}
