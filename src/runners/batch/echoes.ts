/**
 * Text a container controls never classifies a scheduler's error. Submit
 * commands echo the values they were given (`invalid partition specified:
 * <name>`), and a container's owner chooses some of them (its partitions).
 * So, before a complaint is read: partition names that no scheduler accepts
 * are refused up front, every value the container chose is cut out of the
 * complaint, and a verdict that stops more than this container
 * (`configuration`, `backpressure`) counts only when it cannot have come
 * from the container's own text (see {@link SharedVerdicts}).
 *
 * @module
 */
import type { Container } from '../../types.js';
import type { ErrorClass, RunResult } from './adapter.js';

/** Longest partition name accepted (Slurm and Grid Engine names are short words). */
const MAX_PARTITION = 200;

/** The strings of `container` that reach a submit command's arguments (its partitions). */
export function containerValues(container: Container): string[] {
  const parts = (container.scheduling_parameters?.partitions ?? []).filter((p): p is string => typeof p === 'string' && p !== '');
  return parts.length === 0 ? [] : [...new Set([parts.join(','), ...parts])];
}

/**
 * Why `container`'s partitions can never be submitted anywhere (a name with
 * white space, a control character, a comma or a quote, or an overlong
 * one), or undefined if they may be fine.
 */
export function badPartition(container: Container): string | undefined {
  for (const p of container.scheduling_parameters?.partitions ?? []) {
    if (typeof p !== 'string' || p === '' || p.length > MAX_PARTITION || /[\s\p{Cc},'"`\\]/u.test(p)) {
      const shown = typeof p === 'string' ? JSON.stringify(p.length > 40 ? `${p.slice(0, 40)}…` : p).replace(/\p{Cc}/gu, '?') : typeof p;
      return `scheduling_parameters.partitions has an invalid partition name ${shown} (names cannot be empty or contain white space, commas, quotes or control characters)`;
    }
  }
  return undefined;
}

const REGEXP_SPECIAL = /[.*+?^${}()|[\]\\]/g;

/** `outcome` with every occurrence of `values` (any case) cut out of its output. */
export function withoutEchoes(outcome: RunResult | Error, values: readonly string[]): RunResult | Error {
  if (outcome instanceof Error || values.length === 0) return outcome;
  const sorted = [...values].sort((a, b) => b.length - a.length);
  const re = new RegExp(sorted.map((v) => v.replace(REGEXP_SPECIAL, '\\$&')).join('|'), 'gi');
  // A NUL, which no complaint pattern matches across.
  return { ...outcome, stdout: outcome.stdout.replace(re, '\0'), stderr: outcome.stderr.replace(re, '\0') };
}

/**
 * Verdicts that stop more than one container (`configuration` stops
 * locking, `backpressure` pauses every submission) count only on evidence
 * no single container controls: a failure of a container that chose no
 * value the command was given, or the same verdict for containers that
 * chose different values, within `windowMs`.
 */
export class SharedVerdicts {
  readonly #windowMs: number;
  readonly #seen = new Map<ErrorClass, Map<string, number>>();

  constructor(windowMs = 10 * 60_000) {
    this.#windowMs = windowMs;
  }

  /** Records a verdict for a container that chose `values` at `now` (the runner's clock); true if it counts. */
  confirm(kind: ErrorClass, values: readonly string[], now: number): boolean {
    if (values.length === 0) return true;
    const seen = this.#seen.get(kind) ?? new Map<string, number>();
    this.#seen.set(kind, seen);
    for (const [key, at] of seen) if (now - at > this.#windowMs) seen.delete(key);
    const key = JSON.stringify(values);
    seen.delete(key);
    seen.set(key, now);
    // Two are enough to decide: keep a few, the newest.
    for (const old of seen.keys()) if (seen.size > 8) seen.delete(old);
    return seen.size >= 2;
  }

  /** A submission worked: earlier evidence of a blocked scheduler is stale. */
  clear(): void {
    this.#seen.clear();
  }
}
