/**
 * The one bound on every duration, whether a flag, a configuration key or a
 * library option: Node's timers hold at most 2^31 - 1 ms (about 24.8 days)
 * and fire after 1 ms when given more, so `600h` would become a busy loop.
 * Longer durations are refused where they are given, never clamped silently.
 *
 * @module
 */

/** The longest duration, in ms, that a timer can wait: 2^31 - 1 (24 days 20 h 31 min 23.647 s). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** Why `ms` is not a usable duration of at least `min` ms, or undefined if it is. */
export function durationProblem(ms: unknown, min = 0): string | undefined {
  if (typeof ms !== 'number' || Number.isNaN(ms)) return 'must be a number of milliseconds';
  if (ms < min) return `must be at least ${min} ms`;
  if (ms > MAX_DURATION_MS) return `must be at most ${MAX_DURATION_MS} ms (about 24.8 days; Node's timers cannot wait longer)`;
  return undefined;
}

/**
 * `ms` if it is a duration of at least `min` ms and at most
 * {@link MAX_DURATION_MS}.
 *
 * @throws RangeError naming the option, e.g. `pollInterval must be at most ...`.
 */
export function checkDuration(name: string, ms: unknown, min = 0): number {
  const problem = durationProblem(ms, min);
  if (problem) throw new RangeError(`${name} ${problem}, got ${String(ms)}`);
  return ms as number;
}
