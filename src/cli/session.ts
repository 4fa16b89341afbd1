/**
 * One dispatching session of a command, as presentation only: the
 * Dispatcher owns the stop signals (its `signal` event tells what
 * arrived); the session prints what happens, a periodic status line, and
 * the last status line once every runner has stopped.
 *
 * @module
 */
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import { RunnerConfigError } from '../dispatcher/runner.js';
import { logger } from '../log.js';
import { describeError } from '../util/errors.js';
import { CliError, UsageError } from './errors.js';
import type { Output } from './output.js';
import type { Reporter } from './report.js';

const log = logger('cli');

/**
 * What a session says about a runner. It does not stop or close the
 * runner: the Dispatcher owns it and closes it after its containers settle.
 */
export interface SessionRunner {
  /** What stopping will do, for the signal message, e.g. `sending SIGINT to 3 crunch-run process(es) and waiting for them`. */
  stopNotice(): string;
  /** What a forced exit leaves behind, e.g. `3 crunch-run process(es)`. */
  leftBehind(): string;
}

/** Options of {@link runSession}. */
export interface SessionOptions {
  out: Output;
  /** A Dispatcher created with `handleSignals: true` (the default) and `secondSignal: 'exit'`. */
  dispatcher: Dispatcher;
  runner: SessionRunner;
  reporter: Reporter;
  /** Ms between status lines; 0: only the one at the end. */
  statusInterval: number;
  /** Called when a second signal is about to end the process, e.g. to restore the terminal. */
  beforeForcedExit?: () => void;
}

/**
 * Runs the dispatcher until it stops (a signal, or `dispatcher.stop()` by
 * the caller), then lets the runner finish its work. Rejects with a
 * {@link CliError} if the dispatcher cannot start (credentials, API).
 */
export async function runSession(opts: SessionOptions): Promise<void> {
  const { out, dispatcher: d, runner, reporter } = opts;
  const onSignal = (sig: NodeJS.Signals, count: number): void => {
    if (count === 1) {
      const notice = runner.stopNotice();
      out.event('signal', `received ${sig}: stopping; ${notice} (${sig} again exits at once)`, { signal: sig, notice });
      return;
    }
    const left = runner.leftBehind();
    out.warn(`received ${sig} again: exiting now without waiting for ${left}`, { signal: sig, left }, 'forced-exit');
    opts.beforeForcedExit?.();
  };
  d.on('signal', onSignal);
  const timer = opts.statusInterval > 0 ? setInterval(() => reporter.printStatus(), opts.statusInterval) : undefined;
  try {
    await d.run();
  } catch (err) {
    // A runner that cannot start for a configuration or host reason exits 2: restarting will not fix it.
    throw err instanceof RunnerConfigError ? new UsageError(describeError(err)) : new CliError(describeError(err));
  } finally {
    clearInterval(timer);
    d.off('signal', onSignal);
    d.client.close();
    log('session ended');
  }
  reporter.printStatus();
}
