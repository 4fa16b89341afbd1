/**
 * How a container's time with the local runner ends, as the Dispatcher and
 * listeners are told: every release goes through `Dispatcher.release`, and
 * each is announced with the event that says why.
 *
 * @module
 */
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import type { ReleaseAction, ReleaseOptions } from '../../dispatcher/runner.js';
import { logger } from '../../log.js';
import type { Container } from '../../types.js';
import { describeError } from '../../util/errors.js';
import type { LocalContext } from './context.js';
import type { Job } from './job.js';

const log = logger('local');

/** How crunch-run exited, for messages: `exited with code 1`, `was killed by SIGKILL`. */
export function howExited(code: number | null, signal: NodeJS.Signals | null): string {
  if (code === null && signal === null) return 'exited (started before a restart; its exit status is unknown)';
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/** `d.release`, with the failure described as coming from here. */
export async function release(d: Dispatcher, uuid: string, opts: ReleaseOptions): Promise<ReleaseAction> {
  try {
    return await d.release(uuid, opts);
  } catch (err) {
    throw new Error(`could not release container ${uuid} (${opts.reason}): ${describeError(err)}`);
  }
}

/**
 * After crunch-run exited: the Dispatcher releases a container it left
 * Locked (unlock, with a logs record and a warning carrying the exit code
 * and the tail of its stderr; the Dispatcher delays the next lock of it)
 * or Running (cancel). Done before `runContainer` returns, because it must
 * happen even while the dispatcher stops: a stopped local process can
 * never be resumed. The record the release read also tells how a
 * finished container ended, so it is read only once.
 */
export async function afterExit(ctx: LocalContext, job: Job, d: Dispatcher, exit: { code: number | null; signal: NodeJS.Signals | null }): Promise<void> {
  job.phase = 'cleanup';
  const uuid = job.uuid;
  const how = howExited(exit.code, exit.signal);
  const tail = job.stderr.toString();
  const opts: ReleaseOptions = {
    reason: `crunch-run ${how} without finalizing the container`,
    detail: tail ? `last lines of crunch-run's stderr:\n${tail}` : "crunch-run's stderr was empty",
  };
  const action = await release(d, uuid, opts);
  const proc = { code: exit.code, signal: exit.signal };
  const fresh = d.container(uuid);
  const cmd = ctx.settings.spec.command;
  if (action === 'unlocked') {
    const message = `after "${cmd}" process termination, container state for ${uuid} is "Locked"; unlocking it (crunch-run ${how})`;
    ctx.emit('unlocked', { uuid, reason: `crunch-run ${how} before starting the container`, message });
    // Past MaxDispatchAttempts the API cancels instead of unlocking.
    if (fresh?.state === 'Cancelled') ctx.emit('finished', { uuid, state: 'Cancelled', exitCode: null, process: proc });
  } else if (action === 'cancelled') {
    const message = `after "${cmd}" process termination, container state for ${uuid} is "Running"; updating it to "Cancelled" (crunch-run ${how})`;
    ctx.emit('cancelled', { uuid, reason: opts.reason, message });
    ctx.emit('finished', { uuid, state: 'Cancelled', exitCode: fresh?.exit_code ?? null, process: proc });
  } else if (fresh && (fresh.state === 'Complete' || fresh.state === 'Cancelled')) {
    ctx.emit('finished', { uuid, state: fresh.state, exitCode: fresh.exit_code ?? null, process: proc });
  }
}

/** A container adopted in Running state after a restart: its crunch-run was a child of the old process and cannot be re-attached. */
export async function cancelAdopted(ctx: LocalContext, d: Dispatcher, c: Readonly<Container>): Promise<void> {
  const uuid = c.uuid;
  const reason = 'the dispatcher restarted while this container was running; its crunch-run process cannot be re-attached';
  const message = `container ${uuid} is already Running after a dispatcher restart; its crunch-run process cannot be re-attached, so cancelling it`;
  log(message);
  if ((await release(d, uuid, { reason, cancel: true })) !== 'cancelled') return;
  ctx.emit('cancelled', { uuid, reason, message });
  ctx.emit('finished', { uuid, state: 'Cancelled', exitCode: null });
}

/** The container can never fit on this node: cancelled, with what does not fit. */
export async function reject(ctx: LocalContext, d: Dispatcher, c: Readonly<Container>, reasons: string[]): Promise<void> {
  const uuid = c.uuid;
  const reason = `container resource request cannot be fulfilled on this node: ${reasons.join('; ')}`;
  const message = `${reason}; cancelling ${uuid}`;
  log(message);
  if ((await release(d, uuid, { reason, cancel: true })) !== 'cancelled') return;
  ctx.emit('rejected', { uuid, reason, message });
  ctx.emit('finished', { uuid, state: 'Cancelled', exitCode: null });
}

/** Returns without starting crunch-run, because the job was asked to stop first. */
export function giveUp(ctx: LocalContext, job: Job): void {
  if (job.endReason === 'finished') {
    // A Locked container can only have become Cancelled: someone cancelled it before it started.
    ctx.emit('finished', { uuid: job.uuid, state: 'Cancelled', exitCode: null });
    return;
  }
  skip(ctx, job, String(job.stop.signal.reason));
}

/** Returns without starting crunch-run; the Dispatcher unlocks the container. */
export function skip(ctx: LocalContext, job: Job, reason: string): void {
  const message = `not starting ${job.uuid}: ${reason}`;
  log(message);
  ctx.emit('skipped', { uuid: job.uuid, reason, message });
}
