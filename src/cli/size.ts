/**
 * Byte sizes as the Arvados configuration writes them: `8GiB`, `512MiB`,
 * `550M` (decimal), `1.5GiB`, or plain bytes.
 *
 * @module
 */

const POWERS: Record<string, number> = { k: 1, m: 2, g: 3, t: 4, p: 5, e: 6 };

/**
 * Parses a size into bytes (rounded down). `K`, `M`, `G`, `T`, `P`, `E` are
 * powers of 1000, with `i` (`KiB`, `GiB`) powers of 1024; a trailing `B` is
 * optional; case does not matter.
 *
 * @throws RangeError with a message naming the bad text.
 */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgtpe])(i)?)?b?$/i.exec(text.trim());
  if (!m) throw new RangeError(`invalid size "${text}" (use e.g. 8GiB, 512MiB, 1.5G or a number of bytes)`);
  const n = Number(m[1]);
  const power = m[2] ? POWERS[m[2].toLowerCase()] : 0;
  const bytes = Math.floor(n * (m[3] ? 1024 : 1000) ** power);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`invalid size "${text}": too large`);
  return bytes;
}
