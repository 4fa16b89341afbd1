/**
 * The local runner: runs each container as a `crunch-run` child process on
 * this machine, within its vCPUs, RAM and GPUs, like Arvados'
 * crunch-dispatch-local.
 *
 * Differences from the Go original, each on purpose:
 * - stopping escalates: SIGINT, then SIGTERM after `stopGrace`, then SIGKILL
 *   after `killGrace` (Go only ever sends SIGINT, so a stuck crunch-run
 *   blocks shutdown for ever);
 * - a failure to start crunch-run is thrown to the Dispatcher, which records
 *   it and unlocks the container, so a missing binary on one node does not
 *   cancel work another node could run (the API cancels after
 *   `MaxDispatchAttempts`);
 * - a request that can never fit is cancelled with a `runtime_status.error`
 *   saying what does not fit.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import type { Dispatcher, RunContainer } from '../../dispatcher/dispatcher.js';
import type { ContainerUpdates, StreamEndReason } from '../../dispatcher/updates.js';
import { logger } from '../../log.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';
import type { Container, ContainerState } from '../../types.js';
import { isContainerUuid } from '../../uuid.js';
import {
  ResourcePool,
  formatBytes,
  type Allocation,
  type ResourceCapacityOverrides,
  type ResourceNeed,
} from './resources.js';

const log = logger('local');

export { DEFAULT_RESERVE_EXTRA_RAM };
/** Default ms between SIGINT and SIGTERM when stopping crunch-run. */
export const DEFAULT_STOP_GRACE = 60_000;
/** Default ms between SIGTERM and SIGKILL. */
export const DEFAULT_KILL_GRACE = 10_000;
/** Bound on the API calls made after a child exits, so shutdown cannot hang on a dead API. */
const CLEANUP_TIMEOUT = 30_000;
/** A child's output line longer than this is split, so a child writing no newlines cannot grow memory. */
const MAX_LINE = 16 * 1024;
const LIVE = new Set<ContainerState>(['Locked', 'Running']);

/** Options of {@link LocalRunner}. */
export interface LocalRunnerOptions {
  /** The crunch-run executable, a name looked up on PATH or a path. Default `crunch-run`. */
  crunchRunCommand?: string;
  /** Arguments put before the container UUID (`Containers.CrunchRunArgumentsList`). */
  crunchRunArgs?: readonly string[];
  /** If set, `--runtime-engine=<engine>` is passed first (e.g. `docker`, `singularity`). */
  runtimeEngine?: string;
  /**
   * Bytes of RAM reserved per container on top of `ram + keep_cache_ram`,
   * for crunch-run, arv-mount and the container runtime.
   * Default {@link DEFAULT_RESERVE_EXTRA_RAM} (550 MiB, Arvados' default).
   */
  reserveExtraRam?: number;
  /** Overrides of the detected capacity (CPU count, total RAM, CUDA/AMD_VISIBLE_DEVICES). */
  capacity?: ResourceCapacityOverrides;
  /**
   * Ms after SIGINT before SIGTERM is sent. Default {@link DEFAULT_STOP_GRACE}.
   * Also how long crunch-run may keep running after its container became
   * final before it is sent SIGINT.
   */
  stopGrace?: number;
  /** Ms after SIGTERM before SIGKILL is sent. Default {@link DEFAULT_KILL_GRACE}. */
  killGrace?: number;
  /** Where the child's PATH and TMPDIR come from. Default `process.env`; nothing else of it is passed on. */
  env?: NodeJS.ProcessEnv;
}

/** Something the runner decided about a container, for progress displays. */
export interface RunnerNotice {
  uuid: string;
  /** Short reason; for cancellations, the text put into `runtime_status.error`. */
  reason: string;
  /** A one-line log message for operators. */
  message: string;
}

/** Events of a {@link LocalRunner}. */
export interface LocalRunnerEvents {
  /** The container does not fit into what is free now and waits for resources. */
  waiting: [e: { uuid: string; need: ResourceNeed; message: string }];
  /** crunch-run started. */
  started: [e: { uuid: string; pid: number; vcpus: number; ram: number; gpuIds: readonly string[] }];
  /** A line crunch-run wrote. */
  output: [e: { uuid: string; pid: number; stream: 'stdout' | 'stderr'; line: string }];
  /** A signal was sent to crunch-run to stop it. */
  signalled: [e: { uuid: string; pid: number; signal: NodeJS.Signals; reason: string }];
  /** crunch-run exited. */
  exited: [e: { uuid: string; pid: number; code: number | null; signal: NodeJS.Signals | null }];
  /** The container reached a final state while this runner had it. */
  finished: [e: { uuid: string; state: ContainerState; exitCode: number | null; process?: { code: number | null; signal: NodeJS.Signals | null } }];
  /** The runner cancelled the container. */
  cancelled: [e: RunnerNotice];
  /** The container can never fit on this node; the runner cancelled it. */
  rejected: [e: RunnerNotice];
  /** The runner unlocked the container (crunch-run exited before starting it). */
  unlocked: [e: RunnerNotice];
  /** The runner returned without starting crunch-run (priority 0, stream ended, shutdown); the dispatcher unlocks it. */
  skipped: [e: RunnerNotice];
}

/** One `runContainer` call in progress. */
interface Job {
  readonly uuid: string;
  /** Aborted once the container should stop (priority 0, stream ended, shutdown); `reason` says why. */
  readonly stop: AbortController;
  phase: 'starting' | 'waiting' | 'running' | 'cleanup';
  child?: ChildProcess;
  pid?: number;
  exited: boolean;
  stopping: boolean;
  timers: NodeJS.Timeout[];
  /** Why the updates stream ended, once it has. */
  endReason?: StreamEndReason | 'ended';
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `runtime_status` with `error` set, keeping an error crunch-run may already have recorded. */
function withError(status: Record<string, unknown> | undefined, error: string): Record<string, unknown> {
  const s = { ...(status ?? {}) };
  if (typeof s.error === 'string' && s.error !== '') {
    if (typeof s.errorDetail !== 'string' || s.errorDetail === '') s.errorDetail = error;
  } else {
    s.error = error;
  }
  return s;
}

function howExited(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/** Splits a stream into lines, calling `emit` for each (and for the rest at the end). */
function eachLine(stream: Readable | null, emit: (line: string) => void): void {
  if (!stream) return;
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      emit(buf.slice(0, nl).replace(/\r$/, ''));
      buf = buf.slice(nl + 1);
    }
    while (buf.length > MAX_LINE) {
      emit(buf.slice(0, MAX_LINE));
      buf = buf.slice(MAX_LINE);
    }
  });
  stream.on('end', () => {
    if (buf) emit(buf);
    buf = '';
  });
  // Errors on a child's pipe end the output; the exit status still arrives.
  stream.on('error', () => {});
}

/**
 * Runs containers as local crunch-run processes. Give its
 * {@link LocalRunner.runContainer} to a Dispatcher.
 *
 * @example
 * ```ts
 * const runner = new LocalRunner({ crunchRunCommand: '/usr/bin/crunch-run', runtimeEngine: 'docker' });
 * runner.on('started', ({ uuid, pid }) => console.log(`${uuid}: crunch-run pid ${pid}`));
 * const dispatcher = new Dispatcher({ runContainer: runner.runContainer, handleSignals: false });
 * process.once('SIGTERM', () => void Promise.all([dispatcher.stop(), runner.shutdown()]));
 * await dispatcher.run();
 * await runner.shutdown();
 * ```
 */
export class LocalRunner extends EventEmitter<LocalRunnerEvents> {
  /** The resources containers wait for. */
  readonly pool: ResourcePool;
  /** The crunch-run command as configured. */
  readonly crunchRunCommand: string;
  readonly #args: readonly string[];
  readonly #reserveExtraRam: number;
  readonly #stopGrace: number;
  readonly #killGrace: number;
  readonly #env: NodeJS.ProcessEnv;
  readonly #jobs = new Map<Job, Promise<void>>();
  #shuttingDown = false;

  constructor(opts: LocalRunnerOptions = {}) {
    super();
    const cmd = opts.crunchRunCommand ?? 'crunch-run';
    if (typeof cmd !== 'string' || cmd.trim() === '') throw new TypeError('crunchRunCommand must be a non-empty string');
    const args = opts.crunchRunArgs ?? [];
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) throw new TypeError('crunchRunArgs must be an array of strings');
    const engine = opts.runtimeEngine;
    if (engine !== undefined && (typeof engine !== 'string' || !/^[A-Za-z0-9._-]+$/.test(engine))) {
      throw new TypeError(`runtimeEngine must be a name like "docker" or "singularity", got ${JSON.stringify(engine)}`);
    }
    const nonNegative = (name: string, v: number | undefined, dflt: number): number => {
      const x = v ?? dflt;
      if (!Number.isFinite(x) || x < 0) throw new RangeError(`${name} must be a number >= 0, got ${String(v)}`);
      return x;
    };
    this.crunchRunCommand = cmd;
    // Copied, so that a caller changing its array later cannot change running jobs' argv.
    this.#args = Object.freeze([...(engine ? [`--runtime-engine=${engine}`] : []), ...args]);
    this.#reserveExtraRam = nonNegative('reserveExtraRam', opts.reserveExtraRam, DEFAULT_RESERVE_EXTRA_RAM);
    this.#stopGrace = nonNegative('stopGrace', opts.stopGrace, DEFAULT_STOP_GRACE);
    this.#killGrace = nonNegative('killGrace', opts.killGrace, DEFAULT_KILL_GRACE);
    this.#env = opts.env ?? process.env;
    this.pool = new ResourcePool(opts.capacity, this.#env);
  }

  /** The {@link RunContainer} to give the Dispatcher (bound; pass it as is). */
  readonly runContainer: RunContainer = (d, c, updates) => {
    const job: Job = { uuid: c.uuid, stop: new AbortController(), phase: 'starting', exited: false, stopping: false, timers: [] };
    const done = this.#run(job, d, c, updates).finally(() => {
      this.#clearTimers(job);
      this.#jobs.delete(job);
    });
    this.#jobs.set(job, done);
    return done;
  };

  /** crunch-run processes alive now. */
  get running(): number {
    let n = 0;
    for (const j of this.#jobs.keys()) if (j.child && !j.exited) n++;
    return n;
  }

  /** Containers waiting for resources. */
  get waiting(): number {
    let n = 0;
    for (const j of this.#jobs.keys()) if (j.phase === 'waiting') n++;
    return n;
  }

  /** The crunch-run processes alive now. */
  processes(): Array<{ uuid: string; pid: number }> {
    const out: Array<{ uuid: string; pid: number }> = [];
    for (const j of this.#jobs.keys()) if (j.pid !== undefined && !j.exited) out.push({ uuid: j.uuid, pid: j.pid });
    return out;
  }

  /**
   * The argv and environment crunch-run gets for `uuid`: ONLY PATH, TMPDIR
   * (if set), the API credentials and the allocated GPUs. The token is in
   * the environment, never on the command line.
   */
  commandFor(uuid: string, credentials: Record<string, string>, gpus?: Pick<Allocation, 'gpuStack' | 'gpuIds'>): { argv: string[]; env: Record<string, string> } {
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    const env: Record<string, string> = {};
    if (this.#env.PATH !== undefined) env.PATH = this.#env.PATH;
    if (this.#env.TMPDIR) env.TMPDIR = this.#env.TMPDIR;
    env.ARVADOS_API_HOST = credentials.ARVADOS_API_HOST;
    env.ARVADOS_API_TOKEN = credentials.ARVADOS_API_TOKEN;
    env.ARVADOS_API_HOST_INSECURE = credentials.ARVADOS_API_HOST_INSECURE;
    if (gpus && gpus.gpuIds.length > 0) {
      env[gpus.gpuStack === 'rocm' ? 'AMD_VISIBLE_DEVICES' : 'CUDA_VISIBLE_DEVICES'] = gpus.gpuIds.join(',');
    }
    return { argv: [this.crunchRunCommand, ...this.#args, uuid], env };
  }

  /**
   * What a container needs from the pool: `vcpus`, `ram + keep_cache_ram +
   * reserveExtraRam`, and `gpu.device_count` GPUs of `gpu.stack` (or the
   * legacy `cuda.device_count`).
   */
  needOf(c: Container): ResourceNeed {
    const rc = c.runtime_constraints ?? {};
    const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
    const need: ResourceNeed = { vcpus: num(rc.vcpus), ram: num(rc.ram) + num(rc.keep_cache_ram) + this.#reserveExtraRam };
    const gpu = rc.gpu && num(rc.gpu.device_count) > 0 ? { count: num(rc.gpu.device_count), stack: rc.gpu.stack ?? '' } : undefined;
    const cuda = rc.cuda && num(rc.cuda.device_count) > 0 ? { count: num(rc.cuda.device_count), stack: 'cuda' } : undefined;
    const gpus = gpu ?? cuda;
    if (gpus) need.gpus = gpus;
    return need;
  }

  /**
   * Stops every container: SIGINT to each crunch-run (escalating after the
   * grace periods), waiting ones give up. Resolves when every crunch-run has
   * exited and every `runContainer` call has returned. Later calls return
   * without starting anything. Idempotent.
   */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    for (const job of this.#jobs.keys()) this.#requestStop(job, 'the dispatcher is shutting down');
    await Promise.allSettled([...this.#jobs.values()]);
  }

  // ---- one container ------------------------------------------------------

  async #run(job: Job, d: Dispatcher, c: Container, updates: ContainerUpdates): Promise<void> {
    const uuid = c.uuid;
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    this.#watch(job, updates);
    if (this.#shuttingDown) return this.#skip(job, 'the dispatcher is shutting down');

    if (c.state === 'Running') return this.#cancelAdopted(d, c);
    if (c.state !== 'Locked') {
      log('%s is %s, nothing to run', uuid, c.state);
      return;
    }
    if (c.priority === 0) return this.#skip(job, 'its priority is 0 (cancel requested)');

    const need = this.needOf(c);
    const reasons = this.pool.check(need);
    if (reasons.length) return this.#reject(d, c, reasons);

    let alloc: Allocation;
    if (job.stop.signal.aborted) return this.#giveUp(job);
    if (!this.pool.fitsNow(need, c.priority)) {
      const gpus = need.gpus ? `, ${need.gpus.count} ${need.gpus.stack} GPU(s)` : '';
      const message = `waiting for resources: needs ${need.vcpus} vCPU(s), ${formatBytes(need.ram)} RAM${gpus}`;
      log('%s %s', uuid, message);
      job.phase = 'waiting';
      this.#emit('waiting', { uuid, need, message });
    }
    try {
      alloc = await this.pool.request(need, job.stop.signal, c.priority);
    } catch (err) {
      job.phase = 'starting';
      if (job.stop.signal.aborted) return this.#giveUp(job);
      throw err;
    }
    job.phase = 'starting';
    try {
      if (job.stop.signal.aborted) return this.#giveUp(job);
      const exit = await this.#spawnAndWait(job, d, alloc);
      alloc.release();
      await this.#afterExit(job, d, exit);
    } finally {
      alloc.release();
    }
  }

  /**
   * Reads `updates` for the whole job: priority 0 or the end of the stream
   * asks the job to stop. Checks `done` on every read, so an ended stream is
   * never read in a loop (the Go version's 100% CPU spin, #23075).
   */
  #watch(job: Job, updates: ContainerUpdates): void {
    const it = updates[Symbol.asyncIterator]();
    const loop = async (): Promise<void> => {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          job.endReason = updates.endReason ?? 'ended';
          if (job.endReason === 'finished' && job.phase === 'running') {
            // The container is final, so crunch-run is about to exit by itself;
            // signalling it now could interrupt its last writes.
            const t = setTimeout(() => this.#requestStop(job, 'the container is already final but crunch-run is still running'), this.#stopGrace);
            job.timers.push(t);
          } else {
            this.#requestStop(job, `the updates stream ended (${job.endReason})`);
          }
          return;
        }
        if (r.value.priority === 0 && LIVE.has(r.value.state)) this.#requestStop(job, 'priority is 0 (cancel requested)');
      }
    };
    loop().catch((err: unknown) => this.#requestStop(job, `reading updates failed: ${describe(err)}`));
  }

  #requestStop(job: Job, reason: string): void {
    if (job.phase === 'cleanup') return;
    if (!job.stop.signal.aborted) job.stop.abort(reason);
    if (job.child && !job.exited) this.#stopChild(job, reason);
  }

  /** SIGINT; SIGTERM after stopGrace; SIGKILL after killGrace more. */
  #stopChild(job: Job, reason: string): void {
    if (job.stopping || job.exited || !job.child) return;
    job.stopping = true;
    const send = (sig: NodeJS.Signals, why: string): void => {
      if (job.exited || !job.child) return;
      log('sending %s to pid %d to stop container %s (%s)', sig, job.pid, job.uuid, why);
      this.#emit('signalled', { uuid: job.uuid, pid: job.pid!, signal: sig, reason: why });
      job.child.kill(sig);
    };
    send('SIGINT', reason);
    job.timers.push(
      setTimeout(() => {
        send('SIGTERM', `still running ${this.#stopGrace} ms after SIGINT`);
        job.timers.push(setTimeout(() => send('SIGKILL', `still running ${this.#killGrace} ms after SIGTERM`), this.#killGrace));
      }, this.#stopGrace),
    );
  }

  #clearTimers(job: Job): void {
    for (const t of job.timers.splice(0)) clearTimeout(t);
  }

  async #spawnAndWait(job: Job, d: Dispatcher, alloc: Allocation): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const uuid = job.uuid;
    const { argv, env } = this.commandFor(uuid, d.client.credentialsEnv(), alloc);
    const [cmd, ...args] = argv;
    // argv is logged, never env: the token is only in env.
    log('starting %o for %s', argv, uuid);
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], shell: false });
    } catch (err) {
      throw new Error(`error starting "${cmd}" for ${uuid}: ${describe(err)}`);
    }
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
    } catch (err) {
      throw new Error(`error starting "${cmd}" for ${uuid}: ${describe(err)}`);
    }
    // Later errors (e.g. a failed kill) must not become uncaught 'error' events.
    child.on('error', (err) => log('crunch-run for %s: %s', uuid, describe(err)));
    const pid = child.pid!;
    job.child = child;
    job.pid = pid;
    job.phase = 'running';
    eachLine(child.stdout, (line) => this.#emit('output', { uuid, pid, stream: 'stdout', line }));
    eachLine(child.stderr, (line) => this.#emit('output', { uuid, pid, stream: 'stderr', line }));
    log('started crunch-run pid %d for %s', pid, uuid);
    this.#emit('started', { uuid, pid, vcpus: alloc.vcpus, ram: alloc.ram, gpuIds: alloc.gpuIds });
    if (job.stop.signal.aborted) this.#stopChild(job, String(job.stop.signal.reason));

    const exit = await exited;
    job.exited = true;
    this.#clearTimers(job);
    // Let the last output lines through. A grandchild may keep the pipes
    // open; then close our ends, or they would keep the process alive.
    let timer: NodeJS.Timeout | undefined;
    const how = await Promise.race([closed.then(() => 'closed' as const), new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 500)))]);
    clearTimeout(timer);
    if (how === 'timeout') {
      log('output pipes of crunch-run pid %d for %s are still open after it exited; closing them', pid, uuid);
      child.stdout?.destroy();
      child.stderr?.destroy();
    }
    log('crunch-run pid %d for %s %s', pid, uuid, howExited(exit.code, exit.signal));
    this.#emit('exited', { uuid, pid, code: exit.code, signal: exit.signal });
    return exit;
  }

  /**
   * After crunch-run exited: a container it left Locked is unlocked, one it
   * left Running is cancelled. Done here, not left to the Dispatcher, because
   * it must happen even while the dispatcher stops: a stopped local process
   * can never be resumed.
   */
  async #afterExit(job: Job, d: Dispatcher, exit: { code: number | null; signal: NodeJS.Signals | null }): Promise<void> {
    job.phase = 'cleanup';
    const uuid = job.uuid;
    const cmd = this.crunchRunCommand;
    const signal = AbortSignal.timeout(CLEANUP_TIMEOUT);
    let fresh: Container;
    try {
      fresh = await d.client.getContainer(uuid, { signal });
    } catch (err) {
      throw new Error(`after "${cmd}" process termination, cannot get container ${uuid}: ${describe(err)}`);
    }
    const me = d.auth?.uuid;
    const mine = me === undefined || fresh.locked_by_uuid === me;
    const proc = { code: exit.code, signal: exit.signal };
    if (fresh.state === 'Locked' && mine) {
      const message = `after "${cmd}" process termination, container state for ${uuid} is "Locked"; unlocking it`;
      log(message);
      const res = await d.client.unlockContainer(uuid, { signal });
      this.#emit('unlocked', { uuid, reason: `crunch-run ${howExited(exit.code, exit.signal)} before starting the container`, message });
      // Past MaxDispatchAttempts the API cancels instead of unlocking.
      if (res.state === 'Cancelled') this.#emit('finished', { uuid, state: 'Cancelled', exitCode: null, process: proc });
      return;
    }
    if (fresh.state === 'Running' && mine) {
      const reason = `crunch-run ${howExited(exit.code, exit.signal)} without finalizing the container`;
      const message = `after "${cmd}" process termination, container state for ${uuid} is "Running"; updating it to "Cancelled" (crunch-run ${howExited(exit.code, exit.signal)})`;
      log(message);
      const res = await d.client.updateContainer(uuid, { state: 'Cancelled', runtime_status: withError(fresh.runtime_status, reason) }, { signal });
      this.#emit('cancelled', { uuid, reason, message });
      this.#emit('finished', { uuid, state: 'Cancelled', exitCode: res.exit_code ?? null, process: proc });
      return;
    }
    if (fresh.state === 'Complete' || fresh.state === 'Cancelled') {
      this.#emit('finished', { uuid, state: fresh.state, exitCode: fresh.exit_code ?? null, process: proc });
    }
  }

  /** A container adopted in Running state after a restart: its crunch-run cannot be re-attached (P-27). */
  async #cancelAdopted(d: Dispatcher, c: Container): Promise<void> {
    const uuid = c.uuid;
    const reason = 'the dispatcher restarted while this container was running; its crunch-run process cannot be re-attached';
    const message = `container ${uuid} is already Running after a dispatcher restart; its crunch-run process cannot be re-attached, so cancelling it`;
    log(message);
    const res = await d.client.updateContainer(uuid, { state: 'Cancelled', runtime_status: withError(c.runtime_status, reason) }, { signal: AbortSignal.timeout(CLEANUP_TIMEOUT) });
    this.#emit('cancelled', { uuid, reason, message });
    this.#emit('finished', { uuid, state: 'Cancelled', exitCode: res.exit_code ?? null });
  }

  async #reject(d: Dispatcher, c: Container, reasons: string[]): Promise<void> {
    const uuid = c.uuid;
    const reason = `container resource request cannot be fulfilled on this node: ${reasons.join('; ')}`;
    const message = `${reason}; cancelling ${uuid}`;
    log(message);
    await d.client.updateContainer(uuid, { state: 'Cancelled', runtime_status: withError(c.runtime_status, reason) }, { signal: AbortSignal.timeout(CLEANUP_TIMEOUT) });
    this.#emit('rejected', { uuid, reason, message });
    this.#emit('finished', { uuid, state: 'Cancelled', exitCode: null });
  }

  /** Returns without starting crunch-run, because the job was asked to stop first. */
  #giveUp(job: Job): void {
    if (job.endReason === 'finished') {
      // A Locked container can only have become Cancelled: someone cancelled it before it started.
      this.#emit('finished', { uuid: job.uuid, state: 'Cancelled', exitCode: null });
      return;
    }
    this.#skip(job, String(job.stop.signal.reason));
  }

  #skip(job: Job, reason: string): void {
    const message = `not starting ${job.uuid}: ${reason}`;
    log(message);
    this.#emit('skipped', { uuid: job.uuid, reason, message });
  }

  /** Emits without letting a throwing listener break a container's run. */
  #emit<K extends keyof LocalRunnerEvents>(name: K, ...args: LocalRunnerEvents[K]): void {
    try {
      (this.emit as (n: K, ...a: LocalRunnerEvents[K]) => boolean)(name, ...args);
    } catch (err) {
      log('a %s listener threw: %s', name, describe(err));
    }
  }
}
