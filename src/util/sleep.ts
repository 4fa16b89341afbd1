/**
 * Timers that respect an AbortSignal.
 *
 * @module
 */

/**
 * Resolves after `ms`, or rejects with the signal's reason as soon as it is
 * aborted. The timer is cleared either way, so nothing keeps the process up.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A clock that tests can replace: `now()` in ms and an abortable `sleep`.
 * Every timer and timestamp of the dispatcher and the local runner comes
 * from one (timers through `after` and `timeoutSignal` here), so a
 * `TestClock` from `arvados-dispatch/testing` drives them all.
 */
export interface Clock {
  /** Milliseconds since the epoch, as `Date.now()`. */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason if it is aborted first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock. */
export const realClock: Clock = { now: () => Date.now(), sleep };

/**
 * Calls `fn` after `ms` on `clock`'s time, unless the returned function is
 * called first (the timer form of {@link Clock.sleep}, so that code which
 * needs a timer still takes all its time from one clock).
 */
export function after(clock: Clock, ms: number, fn: () => void): () => void {
  const ac = new AbortController();
  clock.sleep(ms, ac.signal).then(fn, () => {});
  return () => ac.abort();
}

/**
 * An AbortSignal that aborts with a `TimeoutError` after `ms` on `clock`'s
 * time, like `AbortSignal.timeout`, and a `cancel` that drops the timer
 * once it is no longer needed (so that no timer outlives its work).
 */
export function timeoutSignal(clock: Clock, ms: number): { signal: AbortSignal; cancel: () => void } {
  const ac = new AbortController();
  const cancel = after(clock, ms, () => ac.abort(new DOMException(`The operation timed out after ${ms} ms`, 'TimeoutError')));
  return { signal: ac.signal, cancel };
}
