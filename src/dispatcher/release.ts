/**
 * What `Dispatcher.release` writes: the one rule for `runtime_status` and
 * the text of the `logs` record. Kept apart from the I/O so the rule can be
 * read (and tested) on its own.
 *
 * @module
 */
import type { Container } from '../types.js';
import { describeError } from '../util/errors.js';
import { redactAndCut, type Redactor } from '../util/redact.js';
import type { ReleaseOptions } from './runner.js';

/** Longest `runtime_status.error`: one line for Workbench. */
export const MAX_ERROR = 1_000;
/** Longest `runtime_status.errorDetail`. */
export const MAX_ERROR_DETAIL = 4_000;
/** Longest `logs` record text (the detail can hold a stderr tail). */
export const MAX_LOG_TEXT = 16_000;

/**
 * The `runtime_status` a cancelled container gets. If it already has an
 * `error` (crunch-run, or an earlier release, said why it failed), it is
 * kept exactly as it is: the first reason is the real one, and a later
 * "cancelled by the dispatcher" would hide it. Otherwise `error` is the
 * release's reason and `errorDetail` the description of its error, if one
 * was given. Both are redacted, then cut.
 */
export function mergedRuntimeStatus(
  current: Container['runtime_status'],
  opts: Pick<ReleaseOptions, 'reason' | 'error'>,
  redactor: Redactor,
): Record<string, unknown> {
  const status: Record<string, unknown> = { ...(current ?? {}) };
  if (typeof status.error === 'string' && status.error !== '') return status;
  status.error = redactAndCut(oneLine(opts.reason), MAX_ERROR, redactor);
  if (opts.error !== undefined) status.errorDetail = redactAndCut(describeError(opts.error), MAX_ERROR_DETAIL, redactor);
  return status;
}

/**
 * The text of the `logs` record (`event_type: "dispatch"`): the reason, `:
 * <error>` if an error was given, then the detail lines. Redacted as a whole,
 * then cut, so a cut can never leave a piece of a secret.
 */
export function releaseLogText(opts: ReleaseOptions, redactor: Redactor): string {
  let text = opts.error !== undefined ? `${opts.reason}: ${describeError(opts.error)}` : opts.reason;
  if (opts.detail) text += `\n${opts.detail}`;
  return redactAndCut(text, MAX_LOG_TEXT, redactor);
}

function oneLine(s: string): string {
  return s.replace(/\s*\r?\n\s*/g, ' ').trim();
}
