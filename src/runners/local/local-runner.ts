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
import { RunnerConfigError, type ReleaseAction, type ReleaseOptions, type RunContainer, type Runner } from '../../dispatcher/runner.js';
import type { ContainerUpdates, StreamEndReason } from '../../dispatcher/updates.js';
import { logger } from '../../log.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';
import type { Container, ContainerState } from '../../types.js';
import { describeError } from '../../util/errors.js';
import { Redactor } from '../../util/redact.js';
import { isContainerUuid } from '../../uuid.js';
import { findCrunchRun, processAlive } from './orphans.js';
import { sleep } from '../../util/sleep.js';
import { chooseInstanceTypes, fittingInstanceTypeNames, unsatisfiableRelease, type InstanceType, type InstanceTypeRules } from '../instance-types.js';
import { checkEnvOptions, crunchRunCommand, type CommandSpec } from './command.js';
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
/** How often a followed crunch-run of a previous dispatcher is checked for exit. */
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
  exited: boolean;
  stopping: boolean;
  timers: NodeJS.Timeout[];
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

function howExited(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

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
  readonly #jobs = new Map<Job, Promise<void>>();
  #closing: Promise<void> | undefined;

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
    const env = { ...(opts.env ?? {}) };
    const envPass = [...(opts.envPass ?? [])];
    checkEnvOptions(env, envPass);
    if (opts.systemRootToken !== undefined && (typeof opts.systemRootToken !== 'string' || opts.systemRootToken === '')) {
      throw new TypeError('systemRootToken must be a non-empty string');
    }
    const processEnv = opts.processEnv ?? process.env;
    this.crunchRunCommand = cmd;
    // Copied, so that a caller changing its objects later cannot change running jobs' argv or environment.
    this.#spec = Object.freeze({
      command: cmd,
      args: Object.freeze([...(engine ? [`--runtime-engine=${engine}`] : []), ...args]),
      processEnv,
      env: Object.freeze(env),
      envPass: Object.freeze(envPass),
      systemRootToken: opts.systemRootToken,
    });
    this.#reserveExtraRam = nonNegative('reserveExtraRam', opts.reserveExtraRam, DEFAULT_RESERVE_EXTRA_RAM);
    this.#instanceTypes = Object.freeze([...(opts.instanceTypes ?? [])]);
    this.#instanceTypeRules = Object.freeze({ ...opts.instanceTypeRules, reserveExtraRam: this.#reserveExtraRam });
    this.#stopGrace = nonNegative('stopGrace', opts.stopGrace, DEFAULT_STOP_GRACE);
    this.#killGrace = nonNegative('killGrace', opts.killGrace, DEFAULT_KILL_GRACE);
    this.pool = new ResourcePool(opts.capacity, processEnv);
  }

  /** The {@link RunContainer} of this runner (bound; it may be passed on its own). */
  readonly runContainer: RunContainer = (d, c, updates) => {
    const job: Job = { uuid: c.uuid, stop: new AbortController(), phase: 'starting', allocated: false, stderr: new Tail(), exited: false, stopping: false, timers: [] };
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
  instanceTypes(container: Readonly<Container>): string[] {
    return fittingInstanceTypeNames(this.#instanceTypes, container, this.#instanceTypeRules);
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

  /** @deprecated Use {@link LocalRunner.close} (the same). */
  shutdown(): Promise<void> {
    return this.close();
  }

  // ---- one container ------------------------------------------------------

  async #run(job: Job, d: Dispatcher, c: Readonly<Container>, updates: ContainerUpdates): Promise<void> {
    const uuid = c.uuid;
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    this.#watch(job, updates);
    if (this.#closing) return this.#skip(job, 'the dispatcher is shutting down');

    if (c.state === 'Running' || c.state === 'Locked') {
      // A crunch-run a previous dispatcher on this host started (it was killed, its children were not).
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
      const exit = await this.#spawnAndWait(job, d, alloc);
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
    loop().catch((err: unknown) => this.#requestStop(job, `reading updates failed: ${describeError(err)}`));
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
    const credentials = d.client.credentialsEnv();
    const { argv, env } = this.commandFor(uuid, credentials, alloc);
    const redactor = new Redactor([credentials.ARVADOS_API_TOKEN, this.#spec.systemRootToken, env.GatewayAuthSecret]);
    const [cmd, ...args] = argv;
    // argv is logged, never env: the token is only in env.
    log('starting %o for %s', argv, uuid);
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], shell: false });
    } catch (err) {
      throw startError(cmd, uuid, err);
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
      throw startError(cmd, uuid, err);
    }
    // Later errors (e.g. a failed kill) must not become uncaught 'error' events.
    child.on('error', (err) => log('crunch-run for %s: %s', uuid, describeError(err)));
    const pid = child.pid!;
    job.child = child;
    job.pid = pid;
    job.phase = 'running';
    eachLine(child.stdout, redactor, (line) => this.#emit('output', { uuid, pid, stream: 'stdout', line }));
    eachLine(child.stderr, redactor, (line) => {
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
      await sleep(ORPHAN_POLL_MS).catch(() => {});
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
