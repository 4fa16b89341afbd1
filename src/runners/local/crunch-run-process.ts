/**
 * One crunch-run child process, from its start to its exit: started with
 * retries while this process is out of descriptors, processes or memory,
 * recorded in a pid file so a restart follows it, its output turned into
 * redacted lines, and its exit awaited with the last lines let through.
 *
 * @module
 */
import type { ChildProcess } from 'node:child_process';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import { RunnerConfigError } from '../../dispatcher/runner.js';
import { logger } from '../../log.js';
import { describeError } from '../../util/errors.js';
import { Redactor } from '../../util/redact.js';
import { after } from '../../util/sleep.js';
import type { LocalContext } from './context.js';
import { clearTimers, type Job } from './job.js';
import { howExited } from './outcomes.js';
import { eachLine } from './output.js';
import { followFile, type PidFiles } from './pid-files.js';
import type { Allocation } from './resources.js';
import { stopChild } from './stopping.js';

const log = logger('local');

/** How a crunch-run exited: `null` both for one followed by pid, whose status is unknown. */
export interface CrunchRunExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Why crunch-run could not be started. A missing or unusable command fails
 * every container alike, so it is a {@link RunnerConfigError}: the Dispatcher
 * stops locking instead of cycling containers through lock and unlock.
 */
function startError(cmd: string, uuid: string, err: unknown): Error {
  const message = `error starting "${cmd}" for ${uuid}: ${describeError(err)}`;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'EACCES' || code === 'ENOTDIR' || code === 'EISDIR') return new RunnerConfigError(message, 'environment');
  return new Error(message);
}

/**
 * Spawn failures of this process, not of the container or the command: out
 * of file descriptors (EMFILE, ENFILE), processes (EAGAIN) or memory. They
 * pass, so the start is retried while the container stays locked, and
 * never charged to the container.
 */
const EXHAUSTED = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'ENOMEM']);

/** A start that failed because this process ran out of something (see {@link EXHAUSTED}). */
export class ExhaustedError extends Error {}

/**
 * Starts crunch-run for the job and waits for it to exit. Rejects with
 * {@link ExhaustedError} when this process could not start it within the
 * retries, or with the start error (see {@link startError}).
 */
export async function runCrunchRun(ctx: LocalContext, job: Job, d: Dispatcher, alloc: Allocation): Promise<CrunchRunExit> {
  const { clock, spawnRetryDelays: delays } = ctx.settings;
  const uuid = job.uuid;
  const credentials = d.client.credentialsEnv();
  const { argv, env } = ctx.commandFor(uuid, credentials, alloc);
  const redactor = new Redactor([credentials.ARVADOS_API_TOKEN, ctx.settings.spec.systemRootToken, env.GatewayAuthSecret]);
  const [cmd, ...args] = argv;
  // argv is logged, never env: the token is only in env.
  log('starting %o for %s', argv, uuid);
  // Output to files in the private state directory (pipes if it cannot
  // be used): a crunch-run that outlives this process keeps writing.
  const files = ctx.pids(d);
  let child: ChildProcess | undefined;
  let outputs: Awaited<ReturnType<PidFiles['openOutput']>> | undefined;
  let exited!: Promise<CrunchRunExit>;
  let closed!: Promise<void>;
  for (let attempt = 0; !child; attempt++) {
    outputs = await files.openOutput(uuid).catch((err: unknown) => {
      log('cannot create output files for %s (%s); using pipes', uuid, describeError(err));
      return undefined;
    });
    try {
      child = await spawnOnce(ctx, cmd, args, env, uuid, outputs ? [outputs[0].fd, outputs[1].fd] : undefined);
      const c = child;
      exited = new Promise((resolve) => c.once('exit', (code, signal) => resolve({ code, signal })));
      closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    } catch (err) {
      if (!(err instanceof ExhaustedError) || attempt >= delays.length || job.stop.signal.aborted) throw err;
      log('%s; retrying in %d ms', err.message, delays[attempt]);
      await clock.sleep(delays[attempt], job.stop.signal).catch(() => {});
      if (job.stop.signal.aborted) throw err;
    } finally {
      // The child has its own descriptors now (or none).
      for (const fh of outputs ?? []) await fh.close();
    }
  }
  // Later errors (e.g. a failed kill) must not become uncaught 'error' events.
  child.on('error', (err) => log('crunch-run for %s: %s', uuid, describeError(err)));
  const pid = child.pid!;
  job.child = child;
  job.pid = pid;
  job.phase = 'running';
  // Before anything can be lost: a restart follows this process instead of starting another.
  await ctx.pids(d).write(uuid, pid).catch((err: unknown) => log('cannot write the pid file of %s: %s', uuid, describeError(err)));
  const stdout = outputs ? followFile(files.outputPath(uuid, 'stdout'), exited, 'start', clock) : child.stdout;
  const stderr = outputs ? followFile(files.outputPath(uuid, 'stderr'), exited, 'start', clock) : child.stderr;
  const drained = Promise.all([stdout, stderr].map((s) => (s ? new Promise((r) => s.once('close', r).once('end', r)) : undefined)));
  eachLine(stdout, redactor, (line) => ctx.emit('output', { uuid, pid, stream: 'stdout', line }));
  eachLine(stderr, redactor, (line) => {
    job.stderr.push(line);
    ctx.emit('output', { uuid, pid, stream: 'stderr', line });
  });
  log('started crunch-run pid %d for %s', pid, uuid);
  ctx.emit('started', { uuid, pid, vcpus: alloc.vcpus, ram: alloc.ram, gpuIds: alloc.gpuIds });
  if (job.stop.signal.aborted) stopChild(ctx, job, String(job.stop.signal.reason));

  const exit = await exited;
  job.exited = true;
  clearTimers(job);
  // Let the last output lines through. A grandchild may keep the pipes
  // open; then close our ends, or they would keep the process alive.
  let cancel: (() => void) | undefined;
  const how = await Promise.race([
    (outputs ? drained : closed).then(() => 'closed' as const),
    new Promise<'timeout'>((r) => (cancel = after(clock, 500, () => r('timeout')))),
  ]);
  cancel?.();
  await files.remove(uuid).catch(() => undefined);
  if (how === 'timeout' && !outputs) {
    log('output pipes of crunch-run pid %d for %s are still open after it exited; closing them', pid, uuid);
    child.stdout?.destroy();
    child.stderr?.destroy();
  }
  log('crunch-run pid %d for %s %s', pid, uuid, howExited(exit.code, exit.signal));
  ctx.emit('exited', { uuid, pid, code: exit.code, signal: exit.signal });
  return exit;
}

/** Starts crunch-run once; resolves when it runs. Rejects with {@link ExhaustedError} or {@link startError}. */
async function spawnOnce(ctx: LocalContext, cmd: string, args: string[], env: Record<string, string>, uuid: string, outputFds?: [number, number]): Promise<ChildProcess> {
  const fail = (err: unknown): Error => {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    return code && EXHAUSTED.has(code) ? new ExhaustedError(`error starting "${cmd}" for ${uuid}: ${describeError(err)}`) : startError(cmd, uuid, err);
  };
  let child: ChildProcess;
  try {
    child = ctx.settings.spawn(cmd, args, { env, stdio: ['ignore', outputFds?.[0] ?? 'pipe', outputFds?.[1] ?? 'pipe'], shell: false });
  } catch (err) {
    throw fail(err);
  }
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } catch (err) {
    throw fail(err);
  }
  return child;
}
