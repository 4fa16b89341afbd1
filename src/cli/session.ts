/**
 * One dispatching session of a command: signal handlers installed before
 * the poll loop starts (crunch-dispatch-local installed them after its
 * blocking loop, so they never ran: P-20), a periodic status line, and a
 * stop that waits for every crunch-run to exit.
 *
 * @module
 */
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import { logger } from '../log.js';
import { CliError } from './errors.js';
import type { Output } from './output.js';
import type { Reporter } from './report.js';

const log = logger('cli');
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGQUIT'];

/** What a session needs of a runner to stop it. */
export interface SessionRunner {
  /** Stops the runner's work as it sees fit (e.g. SIGINT to crunch-run) and resolves when done. */
  shutdown(): Promise<void>;
  /** What stopping will do, for the signal message, e.g. `sending SIGINT to 3 crunch-run process(es) and waiting for them`. */
  stopNotice(): string;
  /** What a forced exit leaves behind, e.g. `3 crunch-run process(es)`. */
  leftBehind(): string;
}

/** Options of {@link runSession}. */
export interface SessionOptions {
  out: Output;
  dispatcher: Dispatcher;
  runner: SessionRunner;
  reporter: Reporter;
  /** Ms between status lines; 0: only the one at the end. */
  statusInterval: number;
  /** Called just before a forced exit (second signal), e.g. to restore the terminal. */
  beforeForcedExit?: () => void;
}

/**
 * Runs the dispatcher until it is stopped (a signal, or `dispatcher.stop()`
 * by the caller), then stops every crunch-run and waits for them. A second
 * signal exits at once with status 1. Rejects with a {@link CliError} if the
 * dispatcher cannot start (credentials, API).
 */
export async function runSession(opts: SessionOptions): Promise<void> {
  const { out, dispatcher: d, runner, reporter } = opts;
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (signalled) {
      const left = runner.leftBehind();
      out.warn(`received ${sig} again: exiting now without waiting for ${left}`, { signal: sig, left }, 'forced-exit');
      opts.beforeForcedExit?.();
      // The write callback runs once the line is out, so nothing is lost.
      process.stderr.write('', () => process.exit(1));
      return;
    }
    signalled = true;
    const notice = runner.stopNotice();
    out.event('signal', `received ${sig}: stopping; ${notice} (${sig} again exits at once)`, { signal: sig, notice });
    void d.stop();
    void runner.shutdown();
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  const timer = opts.statusInterval > 0 ? setInterval(() => reporter.printStatus(), opts.statusInterval) : undefined;
  try {
    await d.run();
  } catch (err) {
    throw new CliError((err as Error).message);
  } finally {
    // Whatever stopped the loop, the runner stops its work too.
    await runner.shutdown();
    clearInterval(timer);
    for (const s of SIGNALS) process.off(s, onSignal);
    d.client.close();
    log('session ended');
  }
  reporter.printStatus();
}
