/**
 * Letting go of a container: the only code that reads a fresh record to
 * decide, writes the `logs` record, merges `runtime_status`, and unlocks or
 * cancels. `Dispatcher.release` calls it and keeps the books (trackers,
 * backoff, events).
 *
 * @module
 */
import type { ContainerApi } from './api.js';
import { ArvadosApiError } from '../client/errors.js';
import { logger } from '../log.js';
import type { Container } from '../types.js';
import { describeError } from '../util/errors.js';
import { redactAndCut, type Redactor } from '../util/redact.js';
import type { ReleaseAction, ReleaseOptions } from './runner.js';

const log = logger('dispatcher');

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

/** What {@link releaseContainer} did. */
export type ReleaseOutcome =
  | { action: 'none'; fresh?: Container; after?: undefined; text?: undefined }
  | { action: Exclude<ReleaseAction, 'none'>; fresh: Container; after: Container; text: string };

/**
 * Reads a fresh record of `uuid`. Unless it is Locked or Running and locked
 * by `me`, does nothing (`none`; also for a container that no longer
 * exists). Otherwise writes the `logs` record (a failure to write it is only
 * logged: the state change matters more than the note about it), then
 * unlocks a Locked container, or cancels a Running one (or a Locked one with
 * `cancel`) with the merged `runtime_status`. `after` is the record as the
 * change left it: past `MaxDispatchAttempts` the API cancels instead of
 * unlocking, and `after.state` shows which. Rejects if the API fails.
 */
export async function releaseContainer(
  client: ContainerApi,
  uuid: string,
  opts: ReleaseOptions,
  ctx: { me: string; redactor: Redactor; signal: AbortSignal },
): Promise<ReleaseOutcome> {
  const { signal, redactor } = ctx;
  let fresh: Container;
  try {
    fresh = await client.getContainer(uuid, { signal });
  } catch (err) {
    if (err instanceof ArvadosApiError && err.status === 404) return { action: 'none' };
    throw err;
  }
  if (fresh.uuid !== uuid) return { action: 'none' };
  if (fresh.locked_by_uuid !== ctx.me || (fresh.state !== 'Locked' && fresh.state !== 'Running')) return { action: 'none', fresh };

  const cancel = fresh.state === 'Running' || opts.cancel === true;
  const text = releaseLogText(opts, redactor);
  try {
    await client.createLog({ object_uuid: uuid, event_type: 'dispatch', properties: { text } }, { signal });
  } catch (err) {
    log('could not write the dispatch log of %s: %s', uuid, describeError(err));
  }
  if (cancel) {
    log('cancelling %s (was %s): %s', uuid, fresh.state, redactor.redact(opts.reason));
    const after = await client.updateContainer(uuid, { state: 'Cancelled', runtime_status: mergedRuntimeStatus(fresh.runtime_status, opts, redactor) }, { signal });
    return { action: 'cancelled', fresh, after, text };
  }
  log('unlocking %s: %s', uuid, redactor.redact(opts.reason));
  const res = await client.unlockContainer(uuid, { signal });
  const after = { ...fresh, state: res.state, priority: res.priority, locked_by_uuid: res.locked_by_uuid, auth_uuid: res.auth_uuid };
  return { action: 'unlocked', fresh, after, text };
}
