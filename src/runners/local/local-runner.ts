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
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import type { InstanceTypeView } from '../../dispatcher/options.js';
import type { RunContainer, Runner, RunnerEventSource, RunnerEvents, RunnerStatus } from '../../dispatcher/runner.js';
import type { ContainerUpdates } from '../../dispatcher/updates.js';
import { logger } from '../../log.js';
import type { Container } from '../../types.js';
import { describeError } from '../../util/errors.js';
import { isContainerUuid } from '../../uuid.js';
import { crunchRunCommand } from '../crunch-run.js';
import { chooseInstanceTypes, fittingInstanceTypes, unsatisfiableRelease } from '../instance-types.js';
import { followOrphan, followSurvivor } from './adoption.js';
import type { LocalContext } from './context.js';
import { ExhaustedError, runCrunchRun } from './crunch-run-process.js';
import { safeEmitter, type Emit, type LocalRunnerEvents } from './events.js';
import { LIVE, clearTimers, newJob, type Job } from './job.js';
import { containerNeed, lockable, nonsenseSizes, shortfall } from './needs.js';
import { resolveLocalOptions, type LocalRunnerOptions, type LocalSettings } from './options.js';
import { findCrunchRun } from './orphans.js';
import { afterExit, cancelAdopted, giveUp, reject, release, skip } from './outcomes.js';
import { PidFiles } from './pid-files.js';
import type { Allocation, ResourceNeed, ResourcePool } from './resources.js';
import { requestStop, stopIfLingering } from './stopping.js';

const log = logger('local');

export { DEFAULT_KILL_GRACE, DEFAULT_RESERVE_EXTRA_RAM, DEFAULT_STOP_GRACE, SPAWN_RETRY_DELAYS, type LocalRunnerOptions } from './options.js';
export type { LocalRunnerEvents, RunnerNotice } from './events.js';

/**
 * Runs containers as local crunch-run processes. Give it to a Dispatcher as
 * its `runner`: the Dispatcher then locks no more than the pool can start,
 * shows each container's scheduling status, and closes the runner when it
 * stops.
 *
 * Its events come two ways: `runner.events` gives the {@link RunnerEvents}
 * every runner shares (what the CLI and the management server read), and
 * the runner itself is an EventEmitter of {@link LocalRunnerEvents}, where
 * `finished` carries the details that `events` gives as `outcome`.
 *
 * @example
 * ```ts
 * const runner = new LocalRunner({ crunchRunCommand: '/usr/bin/crunch-run', runtimeEngine: 'docker' });
 * runner.events.on('started', ({ uuid, pid }) => console.log(`${uuid}: crunch-run pid ${pid}`));
 * await new Dispatcher({ runner }).run(); // until SIGINT/SIGTERM/SIGQUIT; every crunch-run is stopped
 * ```
 */
export class LocalRunner extends EventEmitter<LocalRunnerEvents> implements Runner {
  /** The resources containers wait for. */
  readonly pool: ResourcePool;
  /** The crunch-run command as configured. */
  readonly crunchRunCommand: string;
  readonly #settings: LocalSettings;
  readonly #events = new EventEmitter<RunnerEvents>();
  readonly #emit: Emit = safeEmitter(this, this.#events);
  /** What the parts (starting, following, stopping crunch-run) see of this runner. */
  readonly #ctx: LocalContext;
  readonly #jobs = new Map<Job, Promise<void>>();
  /** Dispatchers whose `stopping` event this runner follows. */
  readonly #followed = new WeakSet<Dispatcher>();
  /** Pid files per API host and token user: one dispatcher's processes are never another's. */
  readonly #pidFiles = new Map<string, PidFiles>();
  #closing: Promise<void> | undefined;

  constructor(opts: LocalRunnerOptions = {}) {
    super();
    const { settings, pool } = resolveLocalOptions(opts);
    this.#settings = settings;
    this.pool = pool;
    this.crunchRunCommand = settings.spec.command;
    this.#ctx = {
      settings,
      pool,
      emit: this.#emit,
      isClosing: () => this.#closing !== undefined,
      pids: (d) => this.#pids(d),
      needOf: (c) => this.needOf(c),
      commandFor: (uuid, credentials, gpus) => this.commandFor(uuid, credentials, gpus),
    };
  }

  /** The {@link RunContainer} of this runner (bound; it may be passed on its own). */
  readonly runContainer: RunContainer = (d, c, updates) => {
    this.#followStop(d);
    const job = newJob(c.uuid);
    const done = this.#run(job, d, c, updates).finally(() => {
      clearTimers(job);
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
    for (const job of this.#jobs.keys()) if (job.uuid === uuid) requestStop(this.#ctx, job, `killed: ${reason}`);
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
      for (const job of this.#jobs.keys()) if (job.endReason !== undefined) requestStop(this.#ctx, job, 'the dispatcher is shutting down');
    });
  }

  /** This runner's events as every runner names them (see {@link RunnerEvents}), for the CLI and the management server. */
  get events(): RunnerEventSource {
    return this.#events;
  }

  /** Counters through the {@link Runner} interface: containers held, crunch-run processes alive, containers waiting for resources. */
  get status(): RunnerStatus {
    return { containers: this.#jobs.size, running: this.running, waiting: this.waiting };
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
    const promised: ResourceNeed[] = [];
    for (const j of this.#jobs.keys()) if (j.phase === 'starting' && !j.allocated && j.need) promised.push(j.need);
    return lockable(this.pool, promised, candidates, (c) => this.needOf(c));
  }

  /**
   * The configured instance types `container` fits, cheapest first; empty
   * without `instanceTypes` or when none fits. For the management API's
   * `instance_types`.
   */
  instanceTypes(container: Readonly<Container>): InstanceTypeView[] {
    return fittingInstanceTypes(this.#settings.instanceTypes, container, this.#settings.instanceTypeRules);
  }

  /**
   * Where a container stands, for the management API: `waiting for
   * resources: needs 16 vCPUs, 4 free`, `starting crunch-run`, `running (pid
   * 123)`, `finishing`; undefined for a container this runner does not have.
   */
  schedulingStatus(uuid: string): string | undefined {
    for (const j of this.#jobs.keys()) {
      if (j.uuid !== uuid) continue;
      if (j.phase === 'waiting') return `waiting for resources: ${j.need ? shortfall(this.pool, j.need) : 'queued'}`;
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
    return crunchRunCommand(this.#settings.spec, uuid, credentials, gpus);
  }

  /**
   * What a container needs from the pool: `vcpus`, `ram + keep_cache_ram +
   * reserveExtraRam`, and `gpu.device_count` GPUs of `gpu.stack` (or the
   * legacy `cuda.device_count`).
   */
  needOf(c: Readonly<Container>): ResourceNeed {
    return containerNeed(c, this.#settings.reserveExtraRam);
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
      for (const job of this.#jobs.keys()) requestStop(this.#ctx, job, 'the dispatcher is shutting down');
      await Promise.allSettled([...this.#jobs.values()]);
    })();
    return this.#closing;
  }

  // ---- one container ------------------------------------------------------

  async #run(job: Job, d: Dispatcher, c: Readonly<Container>, updates: ContainerUpdates): Promise<void> {
    const ctx = this.#ctx;
    const { instanceTypes, instanceTypeRules } = this.#settings;
    const uuid = c.uuid;
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    this.#watch(job, updates);
    if (this.#closing) return skip(ctx, job, 'the dispatcher is shutting down');

    // Only with a pid file (checked synchronously): containers reach the pool in the order they came.
    if ((c.state === 'Running' || c.state === 'Locked') && this.#pids(d).hasRecord(uuid)) {
      const survivor = await this.#pids(d).live(uuid).catch((err: unknown) => {
        log('cannot read the pid file of %s: %s', uuid, describeError(err));
        return undefined;
      });
      if (survivor) return followSurvivor(ctx, job, d, c, survivor);
    }
    if (c.state === 'Running' || c.state === 'Locked') {
      // No pid file: a crunch-run of a previous dispatcher that kept none
      // (Go's crunch-dispatch-local) may still run; found by its command line.
      const pid = findCrunchRun(uuid, this.#settings.spec.command);
      if (pid !== undefined) return followOrphan(ctx, job, d, c, pid);
    }
    if (c.state === 'Running') return cancelAdopted(ctx, d, c);
    if (c.state !== 'Locked') {
      log('%s is %s, nothing to run', uuid, c.state);
      return;
    }
    if (c.priority === 0) return skip(ctx, job, 'its priority is 0 (cancel requested)');

    const types = chooseInstanceTypes(instanceTypes, c, instanceTypeRules);
    if (types.kind === 'unsatisfiable') {
      log('%s: %s', uuid, types.reason);
      await release(d, uuid, unsatisfiableRelease(types));
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
    if (reasons.length) return reject(ctx, d, c, reasons);

    if (job.stop.signal.aborted) return giveUp(ctx, job);
    if (!this.pool.fitsNow(need, c.priority)) {
      const message = `waiting for resources: ${shortfall(this.pool, need)}`;
      log('%s %s', uuid, message);
      job.phase = 'waiting';
      this.#emit('waiting', { uuid, need, message });
    }
    let alloc: Allocation;
    try {
      alloc = await this.pool.request(need, job.stop.signal, c.priority);
    } catch (err) {
      job.phase = 'starting';
      if (job.stop.signal.aborted) return giveUp(ctx, job);
      throw err;
    }
    job.phase = 'starting';
    job.allocated = true;
    try {
      if (job.stop.signal.aborted) return giveUp(ctx, job);
      let exit;
      try {
        exit = await runCrunchRun(ctx, job, d, alloc);
      } catch (err) {
        if (!(err instanceof ExhaustedError)) throw err;
        // This process ran out of something: not the container's fault, so no
        // error on the release (no failure backoff, no cancel), only the reason.
        alloc.release();
        const reason = `${err.message}; this dispatcher is out of resources, so container ${uuid} is unlocked for a later attempt`;
        log('%s', reason);
        await release(d, uuid, { reason });
        return;
      }
      alloc.release();
      await afterExit(ctx, job, d, exit);
    } finally {
      alloc.release();
    }
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
          if (job.endReason === 'finished' && job.phase === 'running') stopIfLingering(this.#ctx, job);
          else requestStop(this.#ctx, job, `the updates stream ended (${job.endReason})`);
          return;
        }
        if (r.value.priority === 0 && LIVE.has(r.value.state)) requestStop(this.#ctx, job, 'priority is 0 (cancel requested)');
      }
    };
    loop().catch((err: unknown) => requestStop(this.#ctx, job, `reading updates failed: ${describeError(err)}`));
  }

  /** The pid files of `d`'s API host and token user. */
  #pids(d: Dispatcher): PidFiles {
    const key = createHash('sha256').update(`${d.client.credentialsEnv().ARVADOS_API_HOST}\n${d.auth?.uuid ?? ''}`).digest('hex').slice(0, 16);
    let files = this.#pidFiles.get(key);
    if (!files) this.#pidFiles.set(key, (files = new PidFiles(join(this.#settings.stateDir, key))));
    return files;
  }
}
