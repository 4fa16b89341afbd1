/**
 * Freezing the records the dispatcher holds, sharing equal strings among
 * them.
 *
 * Records given to runners are frozen: the client makes a fresh object per
 * page, and nobody may change a record after it is handed over, since the
 * dispatcher and the runner read it at the same time. Held records are also
 * most of what a held container costs in memory, and much of a record
 * repeats across containers (command words, mount kinds and paths, image
 * and workflow hashes, environment values): JSON.parse gives every record
 * its own copy of each. The walk that freezes a record swaps each string for
 * an equal one already held, which roughly halves a realistic record's heap.
 *
 * @module
 */

/** Longest string worth sharing; longer ones are rarely repeated. */
const MAX_SHARED_LENGTH = 256;
/** Strings remembered at once; when full, the pool starts over (strings already shared stay shared). */
const MAX_POOL = 4096;

/**
 * A bounded pool of strings. Starting over when full, rather than keeping
 * the first ones, lets unique strings (UUIDs, etags) drop out while repeated
 * ones come straight back.
 */
export class StringPool {
  readonly #pool = new Map<string, string>();

  /** An equal string from the pool (adding `s` if none). */
  share(s: string): string {
    if (s.length > MAX_SHARED_LENGTH) return s;
    const held = this.#pool.get(s);
    if (held !== undefined) return held;
    if (this.#pool.size >= MAX_POOL) this.#pool.clear();
    this.#pool.set(s, s);
    return s;
  }

  /** Strings in the pool now. */
  get size(): number {
    return this.#pool.size;
  }
}

/** Freezes `v` deeply, sharing its strings through `pool`; objects already frozen are left as they are. */
export function freezeShared<T>(v: T, pool: StringPool): T {
  if (!v || typeof v !== 'object' || Object.isFrozen(v)) return v;
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    const x = o[k];
    if (typeof x === 'string') o[k] = pool.share(x);
    else if (x && typeof x === 'object') freezeShared(x, pool);
  }
  Object.freeze(o);
  return v;
}
