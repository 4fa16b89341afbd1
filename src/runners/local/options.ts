/**
 * The local runner's options, their defaults, and their checking: every
 * option is checked once, when the runner is made, so a wrong one fails at
 * startup instead of costing containers.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { checkEnvOptions, checkSystemRootToken, type CommandSpec } from '../crunch-run.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';
import type { InstanceType, InstanceTypeRules } from '../instance-types.js';
import { checkDuration } from '../../util/duration.js';
import { realClock, type Clock } from '../../util/sleep.js';
import { defaultStateDir } from './pid-files.js';
import { ResourcePool, type ResourceCapacityOverrides } from './resources.js';

export { DEFAULT_RESERVE_EXTRA_RAM };
/** Default ms between SIGINT and SIGTERM when stopping crunch-run. */
export const DEFAULT_STOP_GRACE = 60_000;
/** Default ms between SIGTERM and SIGKILL. */
export const DEFAULT_KILL_GRACE = 10_000;
/** Delays before each retry of a crunch-run start that failed with EMFILE, ENFILE, EAGAIN or ENOMEM; then the container is unlocked, uncharged. */
export const SPAWN_RETRY_DELAYS: readonly number[] = [500, 1_000, 2_000, 4_000, 8_000];

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

/** The options of a {@link LocalRunner}, checked, with their defaults filled in. */
export interface LocalSettings {
  /** What crunch-run is started with; frozen copies of the caller's objects. */
  readonly spec: CommandSpec;
  /** Bytes added to each container's RAM need. */
  readonly reserveExtraRam: number;
  readonly instanceTypes: readonly InstanceType[];
  /** With `reserveExtraRam`, so that the choice and the pool count RAM alike. */
  readonly instanceTypeRules: InstanceTypeRules;
  /** Ms from SIGINT to SIGTERM, and from a container's end to SIGINT. */
  readonly stopGrace: number;
  /** Ms from SIGTERM to SIGKILL. */
  readonly killGrace: number;
  readonly clock: Clock;
  /** Absolute; one subdirectory per API host and token user. */
  readonly stateDir: string;
  readonly spawn: typeof spawn;
  readonly spawnRetryDelays: readonly number[];
}

/**
 * Checks `opts` and fills in the defaults. The pool is made here, between
 * the other checks and that of `stateDir`, so that of several wrong options
 * the same one is reported as always.
 *
 * @throws TypeError or RangeError naming the first wrong option.
 */
export function resolveLocalOptions(opts: LocalRunnerOptions): { settings: LocalSettings; pool: ResourcePool } {
  const spawnRetryDelays = (opts.spawnRetryDelays ?? SPAWN_RETRY_DELAYS).map((ms, i) => checkDuration(`spawnRetryDelays[${i}]`, ms));
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
  // Copied, so that a caller changing its objects later cannot change running jobs' argv or environment.
  const spec: CommandSpec = Object.freeze({
    command: cmd,
    args: Object.freeze([...args]),
    runtimeEngine: engine,
    processEnv,
    env: Object.freeze(env),
    envPass: Object.freeze(envPass),
    systemRootToken: opts.systemRootToken,
  });
  const reserveExtraRam = nonNegative('reserveExtraRam', opts.reserveExtraRam, DEFAULT_RESERVE_EXTRA_RAM);
  const instanceTypes = Object.freeze([...(opts.instanceTypes ?? [])]);
  const instanceTypeRules = Object.freeze({ ...opts.instanceTypeRules, reserveExtraRam });
  const clock = opts.clock ?? realClock;
  const stopGrace = checkDuration('stopGrace', opts.stopGrace ?? DEFAULT_STOP_GRACE);
  const killGrace = checkDuration('killGrace', opts.killGrace ?? DEFAULT_KILL_GRACE);
  const pool = new ResourcePool(opts.capacity, processEnv);
  const stateDir = opts.stateDir ?? defaultStateDir(processEnv);
  if (typeof stateDir !== 'string' || !stateDir.startsWith('/')) throw new TypeError(`stateDir must be an absolute path, got ${JSON.stringify(stateDir)}`);
  const settings: LocalSettings = {
    spec,
    reserveExtraRam,
    instanceTypes,
    instanceTypeRules,
    stopGrace,
    killGrace,
    clock,
    stateDir,
    spawn: opts.spawn ?? spawn,
    spawnRetryDelays,
  };
  return { settings, pool };
}
