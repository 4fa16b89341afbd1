/**
 * Stopping a crunch-run: SIGINT, then SIGTERM after `stopGrace`, then
 * SIGKILL after `killGrace` more. Go only ever sends SIGINT, so a stuck
 * crunch-run blocked its shutdown for ever.
 *
 * @module
 */
import { logger } from '../../log.js';
import { describeError } from '../../util/errors.js';
import { after } from '../../util/sleep.js';
import type { LocalContext } from './context.js';
import type { Job } from './job.js';

const log = logger('local');

/** Asks the job to stop: it never starts crunch-run, or its crunch-run is signalled. Nothing once it is cleaning up. */
export function requestStop(ctx: LocalContext, job: Job, reason: string): void {
  if (job.phase === 'cleanup') return;
  if (!job.stop.signal.aborted) job.stop.abort(reason);
  if (job.child && !job.exited) stopChild(ctx, job, reason);
}

/**
 * The container became final while crunch-run runs: it is about to exit by
 * itself, and signalling it now could interrupt its last writes, so it gets
 * `stopGrace` first.
 */
export function stopIfLingering(ctx: LocalContext, job: Job): void {
  job.timers.push(after(ctx.settings.clock, ctx.settings.stopGrace, () => requestStop(ctx, job, 'the container is already final but crunch-run is still running')));
}

/** SIGINT; SIGTERM after stopGrace; SIGKILL after killGrace more. */
export function stopChild(ctx: LocalContext, job: Job, reason: string): void {
  if (job.stopping || job.exited || (!job.child && !job.adopted)) return;
  job.stopping = true;
  const { clock, stopGrace, killGrace } = ctx.settings;
  const send = (sig: NodeJS.Signals, why: string): void => {
    if (job.exited || (!job.child && !job.adopted)) return;
    log('sending %s to pid %d to stop container %s (%s)', sig, job.pid, job.uuid, why);
    ctx.emit('signalled', { uuid: job.uuid, pid: job.pid!, signal: sig, reason: why });
    if (job.child) job.child.kill(sig);
    else {
      // An adopted crunch-run is not our child: signalled by pid.
      try {
        process.kill(job.pid!, sig);
      } catch (err) {
        log('signalling pid %d: %s', job.pid, describeError(err));
      }
    }
  };
  send('SIGINT', reason);
  job.timers.push(
    after(clock, stopGrace, () => {
      send('SIGTERM', `still running ${stopGrace} ms after SIGINT`);
      job.timers.push(after(clock, killGrace, () => send('SIGKILL', `still running ${killGrace} ms after SIGTERM`)));
    }),
  );
}
