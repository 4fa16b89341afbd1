/**
 * The two ways a command fails, and the exit status each gives.
 *
 * @module
 */

import { escapeControls } from '../util/escape.js';
import { redactShapes } from '../util/redact.js';

/** Exit statuses of `arvados-dispatch`. */
export const ExitCode = {
  /** Clean stop (or help/version printed). */
  OK: 0,
  /** Cannot start or run: credentials, API, crunch-run missing, ... */
  FAILURE: 1,
  /** Bad command line. */
  USAGE: 2,
} as const;

/** A bad command line: exit status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Cannot start or run: exit status 1. The message is shown as is, on one line. */
export class CliError extends Error {
  override name = 'CliError';
}

/**
 * `arvados-dispatch: <reason>`, always a single line, with credential shapes
 * (a password inside a URL, a token) masked and control characters escaped:
 * a reason may quote a config value or an API answer.
 */
export function errorLine(reason: string): string {
  return `arvados-dispatch: ${escapeControls(redactShapes(reason.replace(/\s*\n\s*/g, ' ').trim()))}\n`;
}
