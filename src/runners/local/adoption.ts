/**
 * Containers whose crunch-run outlived the dispatcher that started it
 * (after a crash, `kill -9`, or a switch from Go's crunch-dispatch-local):
 * the surviving crunch-run is followed until it exits, instead of a second
 * one being started or a running container being cancelled.
 *
 * @module
 */
import { existsSync } from 'node:fs';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { logger } from '../../log.js';
import type { Container } from '../../types.js';
import { Redactor } from '../../util/redact.js';
import { gatewayAuthSecret } from '../crunch-run.js';
import type { LocalContext } from './context.js';
import { LIVE, clearTimers, type Job } from './job.js';
import { processAlive } from './orphans.js';
import { afterExit, release } from './outcomes.js';
import { eachLine } from './output.js';
import { followFile, isAlive, type PidRecord } from './pid-files.js';
import { stopChild } from './stopping.js';

const log = logger('local');

/** How often a crunch-run adopted after a restart is checked for exit. */
const ADOPTED_POLL_MS = 500;
/** How often a followed crunch-run of a previous dispatcher (no pid file: e.g. Go's crunch-dispatch-local) is checked for exit. */
const ORPHAN_POLL_MS = 500;

/**
 * A crunch-run an earlier runner started (its pid file and process start
 * time match) still runs for the container: follow it until it exits,
 * holding its resources, stopping it as our own on priority 0, then
 * release as after any exit. Its output went to the old dispatcher and is
 * not seen here.
 */
export async function followSurvivor(ctx: LocalContext, job: Job, d: Dispatcher, c: Readonly<Container>, rec: PidRecord): Promise<void> {
  const { clock, spec } = ctx.settings;
  const pool = ctx.pool;
  const uuid = c.uuid;
  job.pid = rec.pid;
  job.adopted = true;
  job.phase = 'running';
  const need = ctx.needOf(c);
  job.need = need;
  const alloc = pool.check(need).length === 0 && pool.fitsNow(need, c.priority) ? await pool.request(need, undefined, c.priority).catch(() => undefined) : undefined;
  job.allocated = alloc !== undefined;
  log('following crunch-run pid %d for %s, started before a restart', rec.pid, uuid);
  ctx.emit('adopted', { uuid, pid: rec.pid });
  const files = ctx.pids(d);
  const credentials = d.client.credentialsEnv();
  const redactor = new Redactor([credentials.ARVADOS_API_TOKEN, spec.systemRootToken, spec.systemRootToken && gatewayAuthSecret(spec.systemRootToken, uuid)]);
  let gone!: () => void;
  const exited = new Promise<void>((r) => (gone = r));
  const streams: Array<Promise<unknown>> = [];
  for (const stream of ['stdout', 'stderr'] as const) {
    const path = files.outputPath(uuid, stream);
    if (!existsSync(path)) continue;
    const s = followFile(path, exited, 'end', clock);
    streams.push(new Promise((r) => s.once('close', r).once('end', r)));
    eachLine(s, redactor, (line) => {
      if (stream === 'stderr') job.stderr.push(line);
      ctx.emit('output', { uuid, pid: rec.pid, stream, line });
    });
  }
  try {
    if (job.stop.signal.aborted) stopChild(ctx, job, String(job.stop.signal.reason));
    // Not our child: no exit event; its /proc entry tells.
    while (await isAlive(rec, uuid)) await clock.sleep(ADOPTED_POLL_MS);
    job.exited = true;
    gone();
    clearTimers(job);
    await Promise.race([Promise.all(streams), clock.sleep(500)]);
    await files.remove(uuid).catch(() => undefined);
    ctx.emit('exited', { uuid, pid: rec.pid, code: null, signal: null });
    alloc?.release();
    await afterExit(ctx, job, d, { code: null, signal: null });
  } finally {
    alloc?.release();
  }
}

/**
 * Follows a crunch-run another dispatcher process on this host started:
 * no second one is started and the container is not cancelled. Its exit
 * is noticed by polling; one that exits leaving the container unfinished
 * gets it cancelled, as for our own. Its resources are not taken from the
 * pool (it was started against the previous process's).
 */
export async function followOrphan(ctx: LocalContext, job: Job, d: Dispatcher, c: Readonly<Container>, pid: number): Promise<void> {
  const uuid = c.uuid;
  log('%s: following crunch-run pid %d, started by a previous dispatcher on this host', uuid, pid);
  job.phase = 'running';
  job.pid = pid;
  let signalled = false;
  while (processAlive(pid)) {
    if (job.stop.signal.aborted && !signalled && job.endReason !== 'finished' && !ctx.isClosing()) {
      // Priority 0, or the container is no longer ours: crunch-run cancels it on SIGINT.
      signalled = true;
      try {
        process.kill(pid, 'SIGINT');
      } catch {
        break;
      }
    }
    if (ctx.isClosing()) return;
    await ctx.settings.clock.sleep(ORPHAN_POLL_MS).catch(() => {});
  }
  job.phase = 'cleanup';
  const fresh = await d.client.getContainer(uuid).catch(() => undefined);
  if (fresh && LIVE.has(fresh.state)) {
    const reason = `crunch-run (pid ${pid}, started by a previous dispatcher) exited without finalizing the container`;
    if ((await release(d, uuid, { reason, cancel: true })) === 'cancelled') ctx.emit('finished', { uuid, state: 'Cancelled', exitCode: null });
    return;
  }
  if (fresh) ctx.emit('finished', { uuid, state: fresh.state, exitCode: fresh.exit_code ?? null });
}
