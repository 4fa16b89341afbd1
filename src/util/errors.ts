/**
 * Describing errors for people: one line, no stack, no repeated codes.
 *
 * @module
 */

/** One line for an error: its message (or its string form), newlines folded. */
export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof Error) text = err.message || err.name;
  else if (typeof err === 'string') text = err;
  else {
    try {
      text = JSON.stringify(err) ?? String(err);
    } catch {
      text = String(err);
    }
  }
  return text.replace(/\s*\r?\n\s*/g, ' ').trim();
}

/** True if `err` is the abort of `signal` (its reason, or an AbortError while it is aborted). */
export function isAbortOf(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (err === signal.reason || (err instanceof Error && err.name === 'AbortError'));
}
