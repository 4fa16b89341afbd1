/**
 * A cancellable one-shot timer on a {@link Clock}: the batch core's timers
 * (queue polls, the submit gate's probe, the rate limiter's refill) run on
 * the injected clock, so a test clock drives them.
 *
 * @module
 */
import type { Clock } from '../../util/sleep.js';

/** Cancels a timer started by {@link startTimer}; idempotent, and a no-op once it fired. */
export type CancelTimer = () => void;

/** Calls `fn` after `ms` on `clock`, unless cancelled first. */
export function startTimer(clock: Clock, ms: number, fn: () => void): CancelTimer {
  const ac = new AbortController();
  clock.sleep(ms, ac.signal).then(
    () => fn(),
    () => {},
  );
  return () => ac.abort();
}
