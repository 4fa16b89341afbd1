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
 *   cancel work another node could run; a missing or unusable command is a
 *   {@link RunnerConfigError}, which stops the Dispatcher from locking more;
 * - a request that can never fit is cancelled with a `runtime_status.error`
 *   saying what does not fit;
 * - with the Dispatcher's `runner` option, containers are not locked beyond
 *   what the pool can start (see {@link LocalRunner.capacity}).
 *
 * Every change of a container's state goes through `Dispatcher.release`.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import type { InstanceTypeView } from '../../dispatcher/options.js';
import { RunnerConfigError, type ReleaseAction, type ReleaseOptions, type RunContainer, type Runner } from '../../dispatcher/runner.js';
import type { ContainerUpdates, StreamEndReason } from '../../dispatcher/updates.js';
import { logger } from '../../log.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';
import type { Container, ContainerState } from '../../types.js';
import { checkDuration } from '../../util/duration.js';
import { describeError } from '../../util/errors.js';
import { Redactor } from '../../util/redact.js';
import { after, realClock, type Clock } from '../../util/sleep.js';
import { isContainerUuid } from '../../uuid.js';
import { PidFiles, defaultStateDir, followFile, isAlive, type PidRecord } from './pid-files.js';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { checkEnvOptions, checkSystemRootToken, crunchRunCommand, gatewayAuthSecret, type CommandSpec } from '../crunch-run.js';
import { findCrunchRun, processAlive } from './orphans.js';
import { chooseInstanceTypes, fittingInstanceTypes, unsatisfiableRelease, type InstanceType, type InstanceTypeRules } from '../instance-types.js';
import { Tail, eachLine } from './output.js';
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
const LIVE = new Set<ContainerState>(['Locked', 'Running']);
/** How often a followed crunch-run of a previous dispatcher (no pid file: e.g. Go's crunch-dispatch-local) is checked for exit. */
const ORPHAN_POLL_MS = 500;

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
   * The cluster's `InstanceTypes`: a container none of them fits is
   * cancelled before it starts, as the batch runners do. Default none.
   */
  instanceTypes?: readonly InstanceType[];
  /** Settings of the instance type choice besides `reserveExtraRam`. */
  instanceTypeRules?: Omit<InstanceTypeRules, 'reserveExtraRam'>;
  /**
   * Ms after SIGINT before SIGTERM is sent. Default {@link DEFAULT_STOP_GRACE}.
   * Also how long crunch-run may keep running after its container became
   * final before it is sent SIGINT.
   */
  stopGrace?: number;
  /** Ms after SIGTERM before SIGKILL is sent. Default {@link DEFAULT_KILL_GRACE}. */
  killGrace?: number;
  /**
   * Where every timer of the runner comes from (grace periods, spawn
   * retries, following a crunch-run adopted after a restart). Default: the
   * real clock; tests may give a `TestClock` from `arvados-dispatch/testing`.
   */
  clock?: Clock;
  /**
   * For tests: starts crunch-run instead of `child_process.spawn` (e.g. to
   * make it fail with EMFILE as a process out of file descriptors would).
   */
  spawn?: typeof spawn;
  /**
   * Delays before each retry of a start that failed because this process
   * ran out of file descriptors, processes or memory (EMFILE, ENFILE,
   * EAGAIN, ENOMEM); after the last, the container is unlocked without
   * being charged. Default {@link SPAWN_RETRY_DELAYS}.
   */
  spawnRetryDelays?: readonly number[];
  /**
   * Where crunch-run's PATH, TMPDIR and `envPass` variables come from, and
   * where GPUs are detected (`CUDA_VISIBLE_DEVICES`, `AMD_VISIBLE_DEVICES`).
   * Default `process.env`; nothing else of it is passed on.
   */
  processEnv?: NodeJS.ProcessEnv;
  /** Extra variables for crunch-run's environment (`--env NAME=VALUE`). */
  env?: Readonly<Record<string, string>>;
  /** Names of variables passed from `processEnv` to crunch-run when set (`--env-pass NAME`). */
  envPass?: readonly string[];
  /**
   * The cluster's `SystemRootToken`. When set, crunch-run gets
   * `GatewayAuthSecret` (see {@link gatewayAuthSecret}), so the controller
   * can reach its container gateway (container shell, live logs).
   */
  systemRootToken?: string;
  /**
   * Where pid files of running crunch-run processes are kept (mode 0700),
   * so that a restarted runner follows a crunch-run that outlived its
   * dispatcher instead of starting another. Default
   * `$XDG_RUNTIME_DIR/arvados-dispatch/local`, else
   * `~/.cache/arvados-dispatch/local`.
   */
  stateDir?: string;
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
  /** A crunch-run started by an earlier runner (before a restart) still runs for the container; it is followed instead of starting another. */
  adopted: [e: { uuid: string; pid: number }];
  /** crunch-run exited. */
  exited: [e: { uuid: string; pid: number; code: number | null; signal: NodeJS.Signals | null }];
  /** The container reached a final state while this runner had it. */
  finished: [e: { uuid: string; state: ContainerState; exitCode: number | null; process?: { code: number | null; signal: NodeJS.Signals | null } }];
  /** The runner cancelled the container. */
  cancelled: [e: RunnerNotice];
  /** The container can never fit on this node; the runner cancelled it. */
  rejected: [e: RunnerNotice];
  /** The runner released the container with an unlock (crunch-run exited before starting it). */
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
  /** What it needs from the pool, once known, and whether it has it. */
  need?: ResourceNeed;
  allocated: boolean;
  /** The last lines crunch-run wrote to stderr, redacted. */
  readonly stderr: Tail;
  child?: ChildProcess;
  pid?: number;
  /** A crunch-run of an earlier runner, followed by pid (not our child). */
  adopted?: boolean;
  exited: boolean;
  stopping: boolean;
  /** Cancels each pending timer of the job (stop grace periods). */
  timers: Array<() => void>;
  /** Why the updates stream ended, once it has. */
  endReason?: StreamEndReason | 'ended';
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
/** Delays before each retry of a crunch-run start that failed with EMFILE, ENFILE, EAGAIN or ENOMEM; then the container is unlocked, uncharged. */
export const SPAWN_RETRY_DELAYS: readonly number[] = [500, 1_000, 2_000, 4_000, 8_000];

/** A start that failed because this process ran out of something (see {@link EXHAUSTED}). */
class ExhaustedError extends Error {}

function howExited(code: number | null, signal: NodeJS.Signals | null): string {
  if (code === null && signal === null) return 'exited (started before a restart; its exit status is unknown)';
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/** What is wrong with a record's `vcpus`/`ram` (not positive integers), or undefined. */
function nonsenseSizes(c: Readonly<Container>): string | undefined {
  const rc = c.runtime_constraints ?? {};
  const ok = (x: unknown): boolean => typeof x === 'number' && Number.isInteger(x) && x >= 1;
  if (!ok(rc.vcpus)) return `runtime_constraints.vcpus is ${JSON.stringify(rc.vcpus ?? null)}`;
  if (!ok(rc.ram)) return `runtime_constraints.ram is ${JSON.stringify(rc.ram ?? null)}`;
  return undefined;
}

/** How often a crunch-run adopted after a restart is checked for exit. */
const ADOPTED_POLL_MS = 500;

/**
 * Runs containers as local crunch-run processes. Give it to a Dispatcher as
 * its `runner`: the Dispatcher then locks no more than the pool can start,
 * shows each container's scheduling status, and closes the runner when it
 * stops.
 *
 * @example
 * ```ts
 * const runner = new LocalRunner({ crunchRunCommand: '/usr/bin/crunch-run', runtimeEngine: 'docker' });
 * runner.on('started', ({ uuid, pid }) => console.log(`${uuid}: crunch-run pid ${pid}`));
 * await new Dispatcher({ runner }).run(); // until SIGINT/SIGTERM/SIGQUIT; every crunch-run is stopped
 * ```
 */
export class LocalRunner extends EventEmitter<LocalRunnerEvents> implements Runner {
  /** The resources containers wait for. */
  readonly pool: ResourcePool;
  /** The crunch-run command as configured. */
  readonly crunchRunCommand: string;
  readonly #spec: CommandSpec;
  readonly #reserveExtraRam: number;
  readonly #instanceTypes: readonly InstanceType[];
  readonly #instanceTypeRules: InstanceTypeRules;
  readonly #stopGrace: number;
  readonly #killGrace: number;
  readonly #clock: Clock;
  readonly #jobs = new Map<Job, Promise<void>>();
  /** Dispatchers whose `stopping` event this runner follows. */
  readonly #followed = new WeakSet<Dispatcher>();
  readonly #stateDir: string;
  /** Pid files per API host and token user: one dispatcher's processes are never another's. */
  readonly #pidFiles = new Map<string, PidFiles>();
  #closing: Promise<void> | undefined;
  readonly #spawn: typeof spawn;
  readonly #spawnRetryDelays: readonly number[];

  constructor(opts: LocalRunnerOptions = {}) {
    super();
    this.#spawn = opts.spawn ?? spawn;
    this.#spawnRetryDelays = (opts.spawnRetryDelays ?? SPAWN_RETRY_DELAYS).map((ms, i) => checkDuration(`spawnRetryDelays[${i}]`, ms));
    const cmd = opts.crunchRunCommand ?? 'crunch-run';
    if (typeof cmd !== 'string' || cmd.trim() === '' || cmd.includes('\0')) throw new TypeError('crunchRunCommand must be a non-empty string without NUL characters');
    const args = opts.crunchRunArgs ?? [];
    // A NUL fails every spawn; refused here, once, it never costs a container.
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string' || a.includes('\0'))) throw new TypeError('crunchRunArgs must be an array of strings without NUL characters');
    const engine = opts.runtimeEngine;
    if (engine !== undefined && (typeof engine !== 'string' || !/^[A-Za-z0-9._-]+$/.test(engine))) {
      throw new TypeError(`runtimeEngine must be a name like "docker" or "singularity", got ${JSON.stringify(engine)}`);
    }
    const nonNegative = (name: string, v: number | undefined, dflt: number): number => {
      const x = v ?? dflt;
      if (!Number.isFinite(x) || x < 0) throw new RangeError(`${name} must be a number >= 0, got ${String(v)}`);
      return x;
    };
    const env = { ...(opts.env ?? {}) };
    const envPass = [...(opts.envPass ?? [])];
    checkEnvOptions(env, envPass);
    checkSystemRootToken(opts.systemRootToken);
    const processEnv = opts.processEnv ?? process.env;
    this.crunchRunCommand = cmd;
    // Copied, so that a caller changing its objects later cannot change running jobs' argv or environment.
    this.#spec = Object.freeze({
      command: cmd,
      args: Object.freeze([...args]),
      runtimeEngine: engine,
      processEnv,
      env: Object.freeze(env),
      envPass: Object.freeze(envPass),
      systemRootToken: opts.systemRootToken,
    });
    this.#reserveExtraRam = nonNegative('reserveExtraRam', opts.reserveExtraRam, DEFAULT_RESERVE_EXTRA_RAM);
    this.#instanceTypes = Object.freeze([...(opts.instanceTypes ?? [])]);
    this.#instanceTypeRules = Object.freeze({ ...opts.instanceTypeRules, reserveExtraRam: this.#reserveExtraRam });
    this.#clock = opts.clock ?? realClock;
    this.#stopGrace = checkDuration('stopGrace', opts.stopGrace ?? DEFAULT_STOP_GRACE);
    this.#killGrace = checkDuration('killGrace', opts.killGrace ?? DEFAULT_KILL_GRACE);
    this.pool = new ResourcePool(opts.capacity, processEnv);
    this.#stateDir = opts.stateDir ?? defaultStateDir(processEnv);
    if (typeof this.#stateDir !== 'string' || !this.#stateDir.startsWith('/')) throw new TypeError(`stateDir must be an absolute path, got ${JSON.stringify(this.#stateDir)}`);
  }

  /** The {@link RunContainer} of this runner (bound; it may be passed on its own). */
  readonly runContainer: RunContainer = (d, c, updates) => {
    this.#followStop(d);
    const job: Job = { uuid: c.uuid, stop: new AbortController(), phase: 'starting', allocated: false, stderr: new Tail(), exited: false, stopping: false, timers: [] };
    const done = this.#run(job, d, c, updates).finally(() => {
      this.#clearTimers(job);
      this.#jobs.delete(job);
    });
    this.#jobs.set(job, done);
    return done;
  };

  /**
   * Stops a container's crunch-run at once: SIGINT now, then SIGTERM and
   * SIGKILL after the usual grace periods (or, if crunch-run has not started
   * yet, it never starts). `Dispatcher.kill` calls it; the Dispatcher
   * releases the container.
   */
  kill(uuid: string, reason: string): void {
    for (const job of this.#jobs.keys()) if (job.uuid === uuid) this.#requestStop(job, `killed: ${reason}`);
  }

  /**
   * On a dispatcher's stop, every crunch-run is signalled at once, including
   * those of containers already final that were being given time to exit
   * by themselves: the stop notice says SIGINT is sent, so it is.
   */
  #followStop(d: Dispatcher): void {
    if (this.#followed.has(d) || typeof d?.once !== 'function') return;
    this.#followed.add(d);
    d.once('stopping', () => {
      for (const job of this.#jobs.keys()) if (job.endReason !== undefined) this.#requestStop(job, 'the dispatcher is shutting down');
    });
  }

  /** crunch-run processes alive now. */
  get running(): number {
    let n = 0;
    for (const j of this.#jobs.keys()) if ((j.child || j.adopted) && !j.exited) n++;
    return n;
  }

  /** Containers waiting for resources. */
  get waiting(): number {
    let n = 0;
    for (const j of this.#jobs.keys()) if (j.phase === 'waiting') n++;
    return n;
  }

  /**
   * How many of `candidates` (in the Dispatcher's lock order) to lock now:
   * those that fit, in order, into what is free and not yet promised to
   * containers that are starting, stopping at the first that does not fit
   * (it must not be jumped, as in the pool itself); 0 while any container
   * waits for resources. A container that can never fit counts, so that it
   * is locked and cancelled with the reason. Without candidates, the free
   * vCPUs (every container needs at least one).
   */
  capacity(candidates: readonly Readonly<Container>[] = []): number {
    if (this.pool.waiting > 0) return 0;
    const free = { ...this.pool.available };
    for (const j of this.#jobs.keys()) {
      if (j.phase !== 'starting' || j.allocated || !j.need) continue;
      free.vcpus -= j.need.vcpus;
      free.ram -= j.need.ram;
      free.gpus -= j.need.gpus?.count ?? 0;
    }
    if (candidates.length === 0) return Math.max(0, Math.floor(free.vcpus));
    let n = 0;
    for (const c of candidates) {
      const need = this.needOf(c);
      if (this.pool.check(need).length > 0) {
        n++;
        continue;
      }
      const gpus = need.gpus?.count ?? 0;
      if (need.vcpus > free.vcpus || need.ram > free.ram || gpus > free.gpus) break;
      free.vcpus -= need.vcpus;
      free.ram -= need.ram;
      free.gpus -= gpus;
      n++;
    }
    return n;
  }

  /**
   * The configured instance types `container` fits, cheapest first; empty
   * without `instanceTypes` or when none fits. For the management API's
   * `instance_types`.
   */
  instanceTypes(container: Readonly<Container>): InstanceTypeView[] {
    return fittingInstanceTypes(this.#instanceTypes, container, this.#instanceTypeRules);
  }

  /**
   * Where a container stands, for the management API: `waiting for
   * resources: needs 16 vCPUs, 4 free`, `starting crunch-run`, `running (pid
   * 123)`, `finishing`; undefined for a container this runner does not have.
   */
  schedulingStatus(uuid: string): string | undefined {
    for (const j of this.#jobs.keys()) {
      if (j.uuid !== uuid) continue;
      if (j.phase === 'waiting') return `waiting for resources: ${j.need ? this.#shortfall(j.need) : 'queued'}`;
      if (j.phase === 'running') return `running (pid ${j.pid})`;
      return j.phase === 'cleanup' ? 'finishing' : 'starting crunch-run';
    }
    return undefined;
  }

  /**
   * The argv and environment crunch-run gets for `uuid`: ONLY PATH, TMPDIR
   * (if set), the `envPass` and `env` variables, the API credentials,
   * `GatewayAuthSecret` (with `systemRootToken`) and the allocated GPUs.
   * The token is in the environment, never on the command line.
   */
  commandFor(
    uuid: string,
    credentials: { ARVADOS_API_HOST: string; ARVADOS_API_TOKEN: string; ARVADOS_API_HOST_INSECURE: string },
    gpus?: Pick<Allocation, 'gpuStack' | 'gpuIds'>,
  ): { argv: string[]; env: Record<string, string> } {
    return crunchRunCommand(this.#spec, uuid, credentials, gpus);
  }

  /**
   * What a container needs from the pool: `vcpus`, `ram + keep_cache_ram +
   * reserveExtraRam`, and `gpu.device_count` GPUs of `gpu.stack` (or the
   * legacy `cuda.device_count`).
   */
  needOf(c: Readonly<Container>): ResourceNeed {
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
   * exited and every `runContainer` call has returned; later calls return
   * the same promise, and no new container is started. A Dispatcher that
   * owns the runner calls it when it stops.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const job of this.#jobs.keys()) this.#requestStop(job, 'the dispatcher is shutting down');
      await Promise.allSettled([...this.#jobs.values()]);
    })();
    return this.#closing;
  }

  // ---- one container ------------------------------------------------------

  async #run(job: Job, d: Dispatcher, c: Readonly<Container>, updates: ContainerUpdates): Promise<void> {
    const uuid = c.uuid;
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    this.#watch(job, updates);
    if (this.#closing) return this.#skip(job, 'the dispatcher is shutting down');

    // Only with a pid file (checked synchronously): containers reach the pool in the order they came.
    if ((c.state === 'Running' || c.state === 'Locked') && this.#pids(d).hasRecord(uuid)) {
      const survivor = await this.#pids(d).live(uuid).catch((err: unknown) => {
        log('cannot read the pid file of %s: %s', uuid, describeError(err));
        return undefined;
      });
      if (survivor) return this.#follow(job, d, c, survivor);
    }
    if (c.state === 'Running' || c.state === 'Locked') {
      // No pid file: a crunch-run of a previous dispatcher that kept none
      // (Go's crunch-dispatch-local) may still run; found by its command line.
      const pid = findCrunchRun(uuid, this.#spec.command);
      if (pid !== undefined) return this.#followOrphan(job, d, c, pid);
    }
    if (c.state === 'Running') return this.#cancelAdopted(d, c);
    if (c.state !== 'Locked') {
      log('%s is %s, nothing to run', uuid, c.state);
      return;
    }
    if (c.priority === 0) return this.#skip(job, 'its priority is 0 (cancel requested)');

    const types = chooseInstanceTypes(this.#instanceTypes, c, this.#instanceTypeRules);
    if (types.kind === 'unsatisfiable') {
      log('%s: %s', uuid, types.reason);
      await this.#release(d, uuid, unsatisfiableRelease(types));
      this.#emit('finished', { uuid, state: 'Cancelled', exitCode: null });
      return;
    }
    const need = this.needOf(c);
    job.need = need;
    // A record without sane sizes is a bad answer from the API, not the
    // container's fault: the dispatcher unlocks it (with a failure backoff)
    // instead of cancelling it.
    const bad = nonsenseSizes(c);
    if (bad) throw new Error(`the API sent a record for ${uuid} that makes no sense (${bad}); not running it, and not cancelling it for that`);
    const reasons = this.pool.check(need);
    if (reasons.length) return this.#reject(d, c, reasons);

    if (job.stop.signal.aborted) return this.#giveUp(job);
    if (!this.pool.fitsNow(need, c.priority)) {
      const message = `waiting for resources: ${this.#shortfall(need)}`;
      log('%s %s', uuid, message);
      job.phase = 'waiting';
      this.#emit('waiting', { uuid, need, message });
    }
    let alloc: Allocation;
    try {
      alloc = await this.pool.request(need, job.stop.signal, c.priority);
    } catch (err) {
      job.phase = 'starting';
      if (job.stop.signal.aborted) return this.#giveUp(job);
      throw err;
    }
    job.phase = 'starting';
    job.allocated = true;
    try {
      if (job.stop.signal.aborted) return this.#giveUp(job);
      let exit;
      try {
        exit = await this.#spawnAndWait(job, d, alloc);
      } catch (err) {
        if (!(err instanceof ExhaustedError)) throw err;
        // This process ran out of something: not the container's fault, so no
        // error on the release (no failure backoff, no cancel), only the reason.
        alloc.release();
        const reason = `${err.message}; this dispatcher is out of resources, so container ${uuid} is unlocked for a later attempt`;
        log('%s', reason);
        await this.#release(d, uuid, { reason });
        return;
      }
      alloc.release();
      await this.#afterExit(job, d, exit);
    } finally {
      alloc.release();
    }
  }

  /** What does not fit now, e.g. `needs 16 vCPUs, 4 free; needs 8 GiB RAM, 2 GiB free`. */
  #shortfall(need: ResourceNeed): string {
    const free = this.pool.available;
    const short: string[] = [];
    if (need.vcpus > free.vcpus) short.push(`needs ${need.vcpus} vCPU${need.vcpus === 1 ? '' : 's'}, ${free.vcpus} free`);
    if (need.ram > free.ram) short.push(`needs ${formatBytes(need.ram)} RAM, ${formatBytes(free.ram)} free`);
    const gpus = need.gpus?.count ?? 0;
    if (gpus > free.gpus) short.push(`needs ${gpus} GPU${gpus === 1 ? '' : 's'}, ${free.gpus} free`);
    return short.length ? short.join('; ') : 'behind containers that were waiting first';
  }

  /**
   * Reads `updates` for the whole job: priority 0 or the end of the stream
   * asks the job to stop. Checks `done` on every read, so an ended stream is
   * never read in a loop (the Go version spun at 100% CPU reading a closed
   * channel).
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
            job.timers.push(after(this.#clock, this.#stopGrace, () => this.#requestStop(job, 'the container is already final but crunch-run is still running')));
          } else {
            this.#requestStop(job, `the updates stream ended (${job.endReason})`);
          }
          return;
        }
        if (r.value.priority === 0 && LIVE.has(r.value.state)) this.#requestStop(job, 'priority is 0 (cancel requested)');
      }
    };
    loop().catch((err: unknown) => this.#requestStop(job, `reading updates failed: ${describeError(err)}`));
  }

  #requestStop(job: Job, reason: string): void {
    if (job.phase === 'cleanup') return;
    if (!job.stop.signal.aborted) job.stop.abort(reason);
    if (job.child && !job.exited) this.#stopChild(job, reason);
  }

  /** SIGINT; SIGTERM after stopGrace; SIGKILL after killGrace more. */
  #stopChild(job: Job, reason: string): void {
    if (job.stopping || job.exited || (!job.child && !job.adopted)) return;
    job.stopping = true;
    const send = (sig: NodeJS.Signals, why: string): void => {
      if (job.exited || (!job.child && !job.adopted)) return;
      log('sending %s to pid %d to stop container %s (%s)', sig, job.pid, job.uuid, why);
      this.#emit('signalled', { uuid: job.uuid, pid: job.pid!, signal: sig, reason: why });
      if (job.child) job.child.kill(sig);
      else {
        try {
          process.kill(job.pid!, sig);
        } catch (err) {
          log('signalling pid %d: %s', job.pid, describeError(err));
        }
      }
    };
    send('SIGINT', reason);
    job.timers.push(
      after(this.#clock, this.#stopGrace, () => {
        send('SIGTERM', `still running ${this.#stopGrace} ms after SIGINT`);
        job.timers.push(after(this.#clock, this.#killGrace, () => send('SIGKILL', `still running ${this.#killGrace} ms after SIGTERM`)));
      }),
    );
  }

  #clearTimers(job: Job): void {
    for (const cancel of job.timers.splice(0)) cancel();
  }

  async #spawnAndWait(job: Job, d: Dispatcher, alloc: Allocation): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const uuid = job.uuid;
    const credentials = d.client.credentialsEnv();
    const { argv, env } = this.commandFor(uuid, credentials, alloc);
    const redactor = new Redactor([credentials.ARVADOS_API_TOKEN, this.#spec.systemRootToken, env.GatewayAuthSecret]);
    const [cmd, ...args] = argv;
    // argv is logged, never env: the token is only in env.
    log('starting %o for %s', argv, uuid);
    // Output to files in the private state directory (pipes if it cannot
    // be used): a crunch-run that outlives this process keeps writing.
    const files = this.#pids(d);
    let child: ChildProcess | undefined;
    let outputs: Awaited<ReturnType<PidFiles['openOutput']>> | undefined;
    let exited!: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
    let closed!: Promise<void>;
    for (let attempt = 0; !child; attempt++) {
      outputs = await files.openOutput(uuid).catch((err: unknown) => {
        log('cannot create output files for %s (%s); using pipes', uuid, describeError(err));
        return undefined;
      });
      try {
        child = await this.#spawnOnce(cmd, args, env, uuid, outputs ? [outputs[0].fd, outputs[1].fd] : undefined);
        const c = child;
        exited = new Promise((resolve) => c.once('exit', (code, signal) => resolve({ code, signal })));
        closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
      } catch (err) {
        const delays = this.#spawnRetryDelays;
        if (!(err instanceof ExhaustedError) || attempt >= delays.length || job.stop.signal.aborted) throw err;
        log('%s; retrying in %d ms', err.message, delays[attempt]);
        await this.#clock.sleep(delays[attempt], job.stop.signal).catch(() => {});
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
    await this.#pids(d).write(uuid, pid).catch((err: unknown) => log('cannot write the pid file of %s: %s', uuid, describeError(err)));
    const stdout = outputs ? followFile(files.outputPath(uuid, 'stdout'), exited, 'start', this.#clock) : child.stdout;
    const stderr = outputs ? followFile(files.outputPath(uuid, 'stderr'), exited, 'start', this.#clock) : child.stderr;
    const drained = Promise.all([stdout, stderr].map((s) => (s ? new Promise((r) => s.once('close', r).once('end', r)) : undefined)));
    eachLine(stdout, redactor, (line) => this.#emit('output', { uuid, pid, stream: 'stdout', line }));
    eachLine(stderr, redactor, (line) => {
      job.stderr.push(line);
      this.#emit('output', { uuid, pid, stream: 'stderr', line });
    });
    log('started crunch-run pid %d for %s', pid, uuid);
    this.#emit('started', { uuid, pid, vcpus: alloc.vcpus, ram: alloc.ram, gpuIds: alloc.gpuIds });
    if (job.stop.signal.aborted) this.#stopChild(job, String(job.stop.signal.reason));

    const exit = await exited;
    job.exited = true;
    this.#clearTimers(job);
    // Let the last output lines through. A grandchild may keep the pipes
    // open; then close our ends, or they would keep the process alive.
    let cancel: (() => void) | undefined;
    const how = await Promise.race([
      (outputs ? drained : closed).then(() => 'closed' as const),
      new Promise<'timeout'>((r) => (cancel = after(this.#clock, 500, () => r('timeout')))),
    ]);
    cancel?.();
    await files.remove(uuid).catch(() => undefined);
    if (how === 'timeout' && !outputs) {
      log('output pipes of crunch-run pid %d for %s are still open after it exited; closing them', pid, uuid);
      child.stdout?.destroy();
      child.stderr?.destroy();
    }
    log('crunch-run pid %d for %s %s', pid, uuid, howExited(exit.code, exit.signal));
    this.#emit('exited', { uuid, pid, code: exit.code, signal: exit.signal });
    return exit;
  }

  /** Starts crunch-run once; resolves when it runs. Rejects with {@link ExhaustedError} or {@link startError}. */
  async #spawnOnce(cmd: string, args: string[], env: Record<string, string>, uuid: string, outputFds?: [number, number]): Promise<ChildProcess> {
    const fail = (err: unknown): Error => {
      const code = (err as NodeJS.ErrnoException | undefined)?.code;
      return code && EXHAUSTED.has(code) ? new ExhaustedError(`error starting "${cmd}" for ${uuid}: ${describeError(err)}`) : startError(cmd, uuid, err);
    };
    let child: ChildProcess;
    try {
      child = this.#spawn(cmd, args, { env, stdio: ['ignore', outputFds?.[0] ?? 'pipe', outputFds?.[1] ?? 'pipe'], shell: false });
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

  /**
   * After crunch-run exited: the Dispatcher releases a container it left
   * Locked (unlock, with a logs record and a warning carrying the exit code
   * and the tail of its stderr; the Dispatcher delays the next lock of it)
   * or Running (cancel). Done here, before returning, because it must
   * happen even while the dispatcher stops: a stopped local process can
   * never be resumed. The record the release read also tells how a
   * finished container ended, so it is read only once.
   */
  async #afterExit(job: Job, d: Dispatcher, exit: { code: number | null; signal: NodeJS.Signals | null }): Promise<void> {
    job.phase = 'cleanup';
    const uuid = job.uuid;
    const how = howExited(exit.code, exit.signal);
    const tail = job.stderr.toString();
    const opts: ReleaseOptions = {
      reason: `crunch-run ${how} without finalizing the container`,
      detail: tail ? `last lines of crunch-run's stderr:\n${tail}` : "crunch-run's stderr was empty",
    };
    const action = await this.#release(d, uuid, opts);
    const proc = { code: exit.code, signal: exit.signal };
    const fresh = d.container(uuid);
    const cmd = this.crunchRunCommand;
    if (action === 'unlocked') {
      const message = `after "${cmd}" process termination, container state for ${uuid} is "Locked"; unlocking it (crunch-run ${how})`;
      this.#emit('unlocked', { uuid, reason: `crunch-run ${how} before starting the container`, message });
      // Past MaxDispatchAttempts the API cancels instead of unlocking.
      if (fresh?.state === 'Cancelled') this.#emit('finished', { uuid, state: 'Cancelled', exitCode: null, process: proc });
    } else if (action === 'cancelled') {
      const message = `after "${cmd}" process termination, container state for ${uuid} is "Running"; updating it to "Cancelled" (crunch-run ${how})`;
      this.#emit('cancelled', { uuid, reason: opts.reason, message });
      this.#emit('finished', { uuid, state: 'Cancelled', exitCode: fresh?.exit_code ?? null, process: proc });
    } else if (fresh && (fresh.state === 'Complete' || fresh.state === 'Cancelled')) {
      this.#emit('finished', { uuid, state: fresh.state, exitCode: fresh.exit_code ?? null, process: proc });
    }
  }

  /**
   * A crunch-run an earlier runner started (its pid file and process start
   * time match) still runs for the container: follow it until it exits,
   * holding its resources, stopping it as our own on priority 0, then
   * release as after any exit. Its output went to the old dispatcher and is
   * not seen here.
   */
  async #follow(job: Job, d: Dispatcher, c: Readonly<Container>, rec: PidRecord): Promise<void> {
    const uuid = c.uuid;
    job.pid = rec.pid;
    job.adopted = true;
    job.phase = 'running';
    const need = this.needOf(c);
    job.need = need;
    const alloc = this.pool.check(need).length === 0 && this.pool.fitsNow(need, c.priority) ? await this.pool.request(need, undefined, c.priority).catch(() => undefined) : undefined;
    job.allocated = alloc !== undefined;
    log('following crunch-run pid %d for %s, started before a restart', rec.pid, uuid);
    this.#emit('adopted', { uuid, pid: rec.pid });
    const files = this.#pids(d);
    const credentials = d.client.credentialsEnv();
    const redactor = new Redactor([credentials.ARVADOS_API_TOKEN, this.#spec.systemRootToken, this.#spec.systemRootToken && gatewayAuthSecret(this.#spec.systemRootToken, uuid)]);
    let gone!: () => void;
    const exited = new Promise<void>((r) => (gone = r));
    const streams: Array<Promise<unknown>> = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      const path = files.outputPath(uuid, stream);
      if (!existsSync(path)) continue;
      const s = followFile(path, exited, 'end', this.#clock);
      streams.push(new Promise((r) => s.once('close', r).once('end', r)));
      eachLine(s, redactor, (line) => {
        if (stream === 'stderr') job.stderr.push(line);
        this.#emit('output', { uuid, pid: rec.pid, stream, line });
      });
    }
    try {
      if (job.stop.signal.aborted) this.#stopChild(job, String(job.stop.signal.reason));
      // Not our child: no exit event; its /proc entry tells.
      while (await isAlive(rec, uuid)) await this.#clock.sleep(ADOPTED_POLL_MS);
      job.exited = true;
      gone();
      this.#clearTimers(job);
      await Promise.race([Promise.all(streams), this.#clock.sleep(500)]);
      await files.remove(uuid).catch(() => undefined);
      this.#emit('exited', { uuid, pid: rec.pid, code: null, signal: null });
      alloc?.release();
      await this.#afterExit(job, d, { code: null, signal: null });
    } finally {
      alloc?.release();
    }
  }

  /** The pid files of `d`'s API host and token user. */
  #pids(d: Dispatcher): PidFiles {
    const key = createHash('sha256').update(`${d.client.credentialsEnv().ARVADOS_API_HOST}\n${d.auth?.uuid ?? ''}`).digest('hex').slice(0, 16);
    let files = this.#pidFiles.get(key);
    if (!files) this.#pidFiles.set(key, (files = new PidFiles(join(this.#stateDir, key))));
    return files;
  }

  /**
   * Follows a crunch-run another dispatcher process on this host started:
   * no second one is started and the container is not cancelled. Its exit
   * is noticed by polling; one that exits leaving the container unfinished
   * gets it cancelled, as for our own. Its resources are not taken from the
   * pool (it was started against the previous process's).
   */
  async #followOrphan(job: Job, d: Dispatcher, c: Readonly<Container>, pid: number): Promise<void> {
    const uuid = c.uuid;
    log('%s: following crunch-run pid %d, started by a previous dispatcher on this host', uuid, pid);
    job.phase = 'running';
    job.pid = pid;
    let signalled = false;
    while (processAlive(pid)) {
      if (job.stop.signal.aborted && !signalled && job.endReason !== 'finished' && !this.#closing) {
        // Priority 0, or the container is no longer ours: crunch-run cancels it on SIGINT.
        signalled = true;
        try {
          process.kill(pid, 'SIGINT');
        } catch {
          break;
        }
      }
      if (this.#closing) return;
      await this.#clock.sleep(ORPHAN_POLL_MS).catch(() => {});
    }
    job.phase = 'cleanup';
    const fresh = await d.client.getContainer(uuid).catch(() => undefined);
    if (fresh && LIVE.has(fresh.state)) {
      const reason = `crunch-run (pid ${pid}, started by a previous dispatcher) exited without finalizing the container`;
      if ((await this.#release(d, uuid, { reason, cancel: true })) === 'cancelled') this.#emit('finished', { uuid, state: 'Cancelled', exitCode: null });
      return;
    }
    if (fresh) this.#emit('finished', { uuid, state: fresh.state, exitCode: fresh.exit_code ?? null });
  }

  /** A container adopted in Running state after a restart: its crunch-run was a child of the old process and cannot be re-attached. */
  async #cancelAdopted(d: Dispatcher, c: Readonly<Container>): Promise<void> {
    const uuid = c.uuid;
    const reason = 'the dispatcher restarted while this container was running; its crunch-run process cannot be re-attached';
    const message = `container ${uuid} is already Running after a dispatcher restart; its crunch-run process cannot be re-attached, so cancelling it`;
    log(message);
    if ((await this.#release(d, uuid, { reason, cancel: true })) !== 'cancelled') return;
    this.#emit('cancelled', { uuid, reason, message });
    this.#emit('finished', { uuid, state: 'Cancelled', exitCode: null });
  }

  async #reject(d: Dispatcher, c: Readonly<Container>, reasons: string[]): Promise<void> {
    const uuid = c.uuid;
    const reason = `container resource request cannot be fulfilled on this node: ${reasons.join('; ')}`;
    const message = `${reason}; cancelling ${uuid}`;
    log(message);
    if ((await this.#release(d, uuid, { reason, cancel: true })) !== 'cancelled') return;
    this.#emit('rejected', { uuid, reason, message });
    this.#emit('finished', { uuid, state: 'Cancelled', exitCode: null });
  }

  /** `d.release`, with the failure described as coming from here. */
  async #release(d: Dispatcher, uuid: string, opts: ReleaseOptions): Promise<ReleaseAction> {
    try {
      return await d.release(uuid, opts);
    } catch (err) {
      throw new Error(`could not release container ${uuid} (${opts.reason}): ${describeError(err)}`);
    }
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
      log('a %s listener threw: %s', name, describeError(err));
    }
  }
}
