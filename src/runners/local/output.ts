/**
 * crunch-run's output as lines, with secrets masked before any line is cut
 * or split, and the tail of its stderr kept for when it fails.
 *
 * @module
 */
import type { Readable } from 'node:stream';
import type { Redactor } from '../../util/redact.js';

/** A line longer than this is split, so a child writing no newlines cannot grow memory. */
export const MAX_LINE = 16 * 1024;
/**
 * How far past a split point the buffer must reach before it is split: more
 * than the longest secret, so the text around the split has been redacted
 * with every secret in it complete.
 */
const SPLIT_MARGIN = 1024;

/**
 * Splits a stream into redacted lines, calling `emit` for each (and for the
 * rest at the end). Whole lines are redacted; an over-long line is redacted
 * while it still extends {@link SPLIT_MARGIN} past the split point, and only
 * then split, so no secret is ever split in two halves that each escape
 * the mask.
 */
export function eachLine(stream: Readable | null, redactor: Redactor, emit: (line: string) => void): void {
  if (!stream) return;
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      emit(redactor.redact(buf.slice(0, nl).replace(/\r$/, '')));
      buf = buf.slice(nl + 1);
    }
    if (buf.length > MAX_LINE + SPLIT_MARGIN) {
      // Redacting again later is harmless: a mask contains no secret.
      buf = redactor.redact(buf);
      while (buf.length > MAX_LINE + SPLIT_MARGIN) {
        emit(buf.slice(0, MAX_LINE));
        buf = buf.slice(MAX_LINE);
      }
    }
  });
  stream.on('end', () => {
    if (buf) emit(redactor.redact(buf));
    buf = '';
  });
  // Errors on a child's pipe end the output; the exit status still arrives.
  stream.on('error', () => {});
}

/** The last lines of a stream, bounded in count and length, for a failure report. */
export class Tail {
  readonly #lines: string[] = [];
  readonly #max: number;
  readonly #width: number;

  constructor(maxLines = 20, width = 500) {
    this.#max = maxLines;
    this.#width = width;
  }

  /** Adds an already redacted line. */
  push(line: string): void {
    this.#lines.push(line.length > this.#width ? `${line.slice(0, this.#width - 1)}…` : line);
    if (this.#lines.length > this.#max) this.#lines.shift();
  }

  /** The kept lines, joined by newlines. */
  toString(): string {
    return this.#lines.join('\n');
  }
}
