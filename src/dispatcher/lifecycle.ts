/**
 * How a Dispatcher stops: on the process's stop signals (signals.ts), an
 * abort signal given to `run()`, `stop()`, or the end of its loop. The
 * first of them aborts every API call, runner and wait of the dispatcher
 * (one AbortSignal) and ends every updates stream; the shutdown then waits
 * for runners to settle and closes the runner, within one
 * `shutdownTimeout`. A second stop signal stops that waiting at once, or
 * exits the process (`secondSignal`).
 *
 * @module
 */
import { setMaxListeners } from 'node:events';
import { logger } from '../log.js';
import { describeError } from '../util/errors.js';
import { after, type Clock } from '../util/sleep.js';
import type { DispatcherEvents } from './options.js';
import type { Runner } from './runner.js';
import { onStopSignals, type SecondSignal } from './signals.js';

const log = logger('dispatcher');

/** How stopping is configured (checked `DispatcherOptions`, see settings.ts). */
export interface StopOptions {
  /** Install handlers for the stop signals. */
  readonly handleSignals: boolean;
  /** Ms to wait for runners and the runner's close. */
  readonly shutdownTimeout: number;
  readonly secondSignal: SecondSignal;
}

/** What stopping needs of its Dispatcher. */
export interface LifecycleHost {
  readonly clock: Clock;
  /** The runner given as `runner`, if any: closed last. */
  readonly runner: Pick<Runner, 'close'> | undefined;
  /** `runContainer` calls not yet settled, by container UUID. */
  runners(): ReadonlyMap<string, Promise<void>>;
  /** Ends every runner's updates stream (reason `stopped`). */
  endStreams(): void;
  /** Logs and emits a warning (redacted). */
  warn(message: string): void;
  /** Emits an event without letting a listener break the bookkeeping. */
  emit<K extends keyof DispatcherEvents>(name: K, ...args: DispatcherEvents[K]): void;
}

/** The stop of one Dispatcher: its abort signal, the stop signals, the shutdown. */
export class Lifecycle {
  readonly #host: LifecycleHost;
  readonly #opts: StopOptions;
  readonly #ac = new AbortController();
  #stopping = false;
  #skipWait: (() => void) | undefined;
  /** A second signal came before the shutdown began waiting: it must not be lost. */
  #skipRequested = false;

  constructor(host: LifecycleHost, opts: StopOptions) {
    this.#host = host;
    this.#opts = opts;
    // Every API call, runner and wait of this dispatcher listens to this one
    // signal (lock concurrency alone is 8): many listeners are the design.
    setMaxListeners(0, this.#ac.signal);
  }

  /** Aborted when the dispatcher begins to stop. */
  get signal(): AbortSignal {
    return this.#ac.signal;
  }

  /** Whether the dispatcher has begun to stop. */
  get stopping(): boolean {
    return this.#stopping;
  }

  /**
   * Stops on `external` aborting and (with `handleSignals`) on the stop
   * signals; returns the function that stops listening to both.
   */
  watch(external: AbortSignal | undefined): () => void {
    const onAbort = (): void => this.beginStop('abort signal');
    if (external?.aborted) this.beginStop('abort signal');
    external?.addEventListener('abort', onAbort, { once: true });
    const removeSignals = this.#opts.handleSignals ? onStopSignals((sig, n) => this.#onSignal(sig, n)) : undefined;
    return () => {
      external?.removeEventListener('abort', onAbort);
      removeSignals?.();
    };
  }

  /** Begins to stop, once: aborts the signal and ends every updates stream. */
  beginStop(reason: string): void {
    if (this.#stopping) return;
    this.#stopping = true;
    log('stopping: %s', reason);
    this.#host.emit('stopping', reason);
    // Queued lock tasks see the aborted signal and return at once (p-queue's
    // clear() would leave their promises pending forever).
    this.#ac.abort(new Error(`dispatcher stopping: ${reason}`));
    this.#host.endStreams();
  }

  #onSignal(sig: NodeJS.Signals, count: number): void {
    this.#host.emit('signal', sig, count);
    if (count === 1) {
      this.beginStop(`received ${sig}`);
    } else if (this.#opts.secondSignal === 'exit') {
      log('received %s again; exiting', sig);
      // The 'signal' listeners have printed by now: writes to stderr are
      // synchronous for files, pipes and terminals on POSIX.
      process.exit(1);
    } else {
      log('received %s again; not waiting for runners', sig);
      this.#skipRequested = true;
      this.#skipWait?.();
    }
  }

  /**
   * Waits for runners to settle, then closes the runner, both within one
   * `shutdownTimeout` (a second signal stops the waiting at once). The runner
   * is closed even when its containers did not settle in time. The wait is
   * in place as soon as this is called.
   */
  async shutDown(): Promise<void> {
    const host = this.#host;
    const timeout = this.#opts.shutdownTimeout;
    let cancelTimer: (() => void) | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => {
      cancelTimer = after(host.clock, timeout, () => resolve('timeout'));
      this.#skipWait = () => resolve('timeout');
      if (this.#skipRequested) resolve('timeout');
    });
    try {
      const runners = host.runners();
      if (runners.size > 0) {
        log('waiting up to %d ms for %d runner(s)', timeout, runners.size);
        const all = Promise.allSettled(runners.values()).then(() => 'done' as const);
        if ((await Promise.race([all, gaveUp])) === 'timeout') {
          const left = [...runners.keys()];
          host.warn(`stopped without waiting for ${left.length} runner(s): ${left.join(', ')}`);
        }
      }
      const runner = host.runner;
      if (runner) {
        const closed = Promise.resolve()
          .then(() => runner.close())
          .then(
            () => 'done' as const,
            (err: unknown) => {
              host.warn(`closing the runner failed: ${describeError(err)}`);
              return 'done' as const;
            },
          );
        if ((await Promise.race([closed, gaveUp])) === 'timeout') host.warn('stopped without waiting for the runner to close');
      }
    } finally {
      cancelTimer?.();
      this.#skipWait = undefined;
    }
  }
}
