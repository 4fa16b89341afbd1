/**
 * Durations as Go writes them (`10s`, `500ms`, `1m`, `1h30m`, `1.5s`),
 * so that flags read like the Arvados configuration they replace.
 *
 * @module
 */
import { MAX_DURATION_MS } from '../util/duration.js';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/**
 * Parses a duration into milliseconds. A unit is required (as in Go) except
 * for `0`; a sum of parts like `1h30m` is allowed; negative values are not,
 * nor values above `MAX_DURATION_MS` (a timer cannot wait longer).
 *
 * @throws RangeError with a message naming the bad text.
 */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (/^0+(?:\.0*)?$/.test(s)) return 0;
  if (/^\d+(?:\.\d*)?$/.test(s)) throw new RangeError(`invalid duration "${text}": missing unit (e.g. ${s}s, 500ms, 1m, 1h30m)`);
  if (s === '') throw new RangeError('invalid duration "": empty');
  let ms = 0;
  PART.lastIndex = 0;
  let i = 0;
  while (i < s.length) {
    PART.lastIndex = i;
    const m = PART.exec(s);
    if (!m) throw new RangeError(`invalid duration "${text}" (use e.g. 10s, 500ms, 1m, 1h30m)`);
    ms += Number(m[1]) * UNIT_MS[m[2]];
    i = PART.lastIndex;
  }
  if (!Number.isFinite(ms) || ms > MAX_DURATION_MS) throw new RangeError(`invalid duration "${text}": too large (at most ${formatDuration(MAX_DURATION_MS)})`);
  return ms;
}

/** Milliseconds as a short Go-style duration: `1h30m`, `10s`, `1.5s`, `250ms`, `0s`. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${Number(ms.toFixed(3))}ms`;
  let rest = ms;
  let out = '';
  const h = Math.floor(rest / 3_600_000);
  if (h) out += `${h}h`;
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  if (m) out += `${m}m`;
  rest -= m * 60_000;
  if (rest) out += `${Number((rest / 1000).toFixed(3))}s`;
  return out;
}
