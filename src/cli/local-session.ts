/**
 * The {@link SessionRunner} and {@link RunnerCounts} of a {@link LocalRunner},
 * shared by the `local` and `demo` commands.
 *
 * @module
 */
import type { LocalRunner } from '../runners/local/local-runner.js';
import type { RunnerCounts } from './report.js';
import type { SessionRunner } from './session.js';

/** What a session says about a local runner and how it counts its work (the Dispatcher closes the runner). */
export function localSession(runner: LocalRunner): SessionRunner & RunnerCounts {
  return {
    stopNotice: () => {
      const n = runner.running;
      return n ? `sending SIGINT to ${n} crunch-run process(es) and waiting for them` : 'no crunch-run is running';
    },
    leftBehind: () => `${runner.running} crunch-run process(es)`,
    running: () => runner.running,
    waiting: () => runner.waiting,
  };
}
