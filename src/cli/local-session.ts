/**
 * The {@link SessionRunner} of a local runner, shared by the `local` and
 * `demo` commands.
 *
 * @module
 */
import type { Runner } from '../dispatcher/runner.js';
import type { SessionRunner } from './session.js';

/** What a session says about a local runner, read from its `status` (the Dispatcher closes the runner). */
export function localSession(runner: Runner): SessionRunner {
  const running = (): number => runner.status?.running ?? 0;
  return {
    stopNotice: () => {
      const n = running();
      return n ? `sending SIGINT to ${n} crunch-run process(es) and waiting for them` : 'no crunch-run is running';
    },
    leftBehind: () => `${running()} crunch-run process(es)`,
  };
}
