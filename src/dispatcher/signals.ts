/**
 * The process signals a Dispatcher stops on. The one signal handler of the
 * package: the CLI presents what happens (through the Dispatcher's `signal`
 * event) but installs no handler of its own.
 *
 * @module
 */

/** The signals that stop a Dispatcher: what systemd, a terminal and `kill` send. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGQUIT'];

/**
 * What a second stop signal does: `stop-waiting` makes `run()` stop waiting
 * for runners at once (they are left as they are); `exit` ends the process
 * with status 1 right after the `signal` event's listeners have run.
 */
export type SecondSignal = 'stop-waiting' | 'exit';

/**
 * Installs `onSignal` for {@link STOP_SIGNALS}, counting deliveries from 1.
 * Returns the function that removes the handlers again.
 */
export function onStopSignals(onSignal: (sig: NodeJS.Signals, count: number) => void): () => void {
  let count = 0;
  const handler = (sig: NodeJS.Signals): void => onSignal(sig, ++count);
  for (const s of STOP_SIGNALS) process.on(s, handler);
  return () => {
    for (const s of STOP_SIGNALS) process.off(s, handler);
  };
}
