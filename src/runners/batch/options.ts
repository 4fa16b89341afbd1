/**
 * Options of the batch core ({@link BatchRunner}), for every batch system,
 * with their defaults and their validation.
 *
 * @module
 */
import { checkDuration } from '../../util/duration.js';
import { realClock, type Clock } from '../../util/sleep.js';
import { checkEnvOptions, checkSystemRootToken } from '../crunch-run.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';
import { defaultSecretsDir } from './job-secrets.js';
import type { InstanceType, InstanceTypeRules } from '../instance-types.js';
import type { CommandRunner } from './commands.js';
import { DEFAULT_PRIORITY_SPREAD } from './priority.js';

/**
 * How long a job may be missing from the queue before its container counts
 * as lost. Both conditions must hold: at least `misses` successful queue
 * queries in a row without the job, *and* at least `ms` milliseconds since
 * the first of them. Failed queries count as neither.
 */
export interface VanishGrace {
  /** Consecutive successful queries without the job. Default 3 (at least 1). */
  misses?: number;
  /** Milliseconds since the first miss. Default 0. */
  ms?: number;
}

/**
 * Backoff between submit attempts after a transient failure: `initialDelay`,
 * then × `factor` per attempt up to `maxDelay`, each with up to 50 % random
 * reduction so that many containers do not retry in lockstep. After
 * `maxAttempts` such failures of one container its job is given up: the
 * container is unlocked with the reason (Arvados cancels it after
 * `MaxDispatchAttempts` locks).
 */
export interface RetryBackoff {
  /** First delay in ms. Default 1 000. */
  initialDelay?: number;
  /**
   * Largest delay in ms. Default 60 000. Also how long submissions stay
   * paused after a back-pressure refusal before one submission probes again,
   * if none of our jobs has left the queue meanwhile.
   */
  maxDelay?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Failed submissions of one container before it is unlocked. Default 10. */
  maxAttempts?: number;
}

/** A token bucket: at most `count` scheduler commands per `periodMs`, bursts up to `count`. */
export interface SubmitRate {
  count: number;
  periodMs: number;
}

/** Options of the batch core. Every one is optional. */
export interface BatchRunnerOptions {
  /** The crunch-run executable the batch script `exec`s. Default `crunch-run`. */
  crunchRunCommand?: string;
  /** Arguments after the command, before `--runtime-engine` and the UUID. Default none. */
  crunchRunArgs?: readonly string[];
  /** Passed as `--runtime-engine=<engine>` (e.g. `docker`, `singularity`) when set. */
  runtimeEngine?: string;
  /** Argument templates (the adapter's default when absent); validated at construction. */
  args?: readonly string[];
  /** Templates added when the container wants GPUs (the adapter's default when absent). */
  gpuArgs?: readonly string[];
  /** Bytes of RAM added to each container's request for crunch-run itself. Default 550 MiB. */
  reserveExtraRam?: number;
  /** Gap between adjacent pending jobs when renicing; below 1 means 10. Default 10. */
  prioritySpread?: number;
  /**
   * Milliseconds between queue queries while there is work (a submission,
   * a cancellation, a change in the queue). Default 10 000.
   */
  queueInterval?: number;
  /**
   * Longest interval the poller slows down to while nothing changes (it
   * doubles after each unchanged query). Default 6 × `queueInterval`,
   * capped at 60 s; equal to `queueInterval` disables slowing down.
   */
  queueIntervalMax?: number;
  /** When a job missing from the queue counts as lost. Default `{ misses: 3, ms: 0 }`. */
  vanishGrace?: VanishGrace;
  /** Backoff between submit attempts after transient failures. */
  submitRetry?: RetryBackoff;
  /**
   * Scheduler commands (submit, cancel, renice, accounting) per period,
   * shared through one token bucket. Default 20 per second. The queue query
   * is not counted: it runs once per interval whatever the load.
   */
  submitRate?: SubmitRate;
  /** Scheduler commands running at once (submit, cancel, renice, accounting). Default 3. */
  commandConcurrency?: number;
  /**
   * How long a job may stay pending for a reason that can never clear
   * (a partition that does not exist…) before its container is cancelled
   * with that reason. Default 60 000.
   */
  neverClearsGrace?: number;
  /** Read why a job ended from the scheduler's accounting when it leaves the queue. Default true. */
  accounting?: boolean;
  /**
   * Extra environment variables for the submit command, which passes them
   * on to the job and so to crunch-run. Not for secrets: schedulers show a
   * job's environment to other users. The runner's own variables (API
   * credentials, `GatewayAuthSecret`) cannot be set here.
   */
  environment?: Readonly<Record<string, string>>;
  /**
   * The cluster's `SystemRootToken`: crunch-run gets `GatewayAuthSecret`
   * (HMAC-SHA256 of the container UUID keyed by it) so the controller can
   * reach its container gateway. Without it, no `GatewayAuthSecret`.
   */
  systemRootToken?: string;
  /**
   * Directory of the per-job secrets files (mode 0700, files 0600) through
   * which the token reaches crunch-run; it must be at the same path on the
   * compute nodes. Default `~/.cache/arvados-dispatch/job-secrets` (or under
   * `$XDG_CACHE_HOME`).
   */
  secretsDir?: string;
  /** Runs commands instead of spawning them (for tests). Default: spawn them. */
  runner?: CommandRunner;
  /** Kill a scheduler command that runs longer than this many ms. Default 60 000. */
  commandTimeout?: number;
  /**
   * Where the core's time comes from: queue polls, grace periods, back-off,
   * the submit gate and the rate limiter. Default the real clock; tests pass
   * a test clock.
   */
  clock?: Clock;
  /**
   * The cluster's `InstanceTypes`: `%I` expands to the cheapest one a
   * container fits, and a container none fits is cancelled before any
   * submission. Default none (`%I` is empty, nothing is refused).
   */
  instanceTypes?: readonly InstanceType[];
  /** Settings of the instance type choice besides `reserveExtraRam` (which is this runner's). */
  instanceTypeRules?: Omit<InstanceTypeRules, 'reserveExtraRam'>;
}

/** {@link BatchRunnerOptions} with every default filled in. */
export interface ResolvedBatchOptions {
  readonly crunchRunCommand: string;
  readonly crunchRunArgs: readonly string[];
  readonly runtimeEngine: string | undefined;
  readonly args: readonly string[];
  readonly gpuArgs: readonly string[];
  readonly reserveExtraRam: number;
  readonly prioritySpread: number;
  readonly queueInterval: number;
  readonly queueIntervalMax: number;
  readonly vanishGrace: Readonly<Required<VanishGrace>>;
  readonly submitRetry: Readonly<Required<RetryBackoff>>;
  readonly submitRate: Readonly<SubmitRate>;
  readonly commandConcurrency: number;
  readonly neverClearsGrace: number;
  readonly accounting: boolean;
  readonly environment: Readonly<Record<string, string>>;
  readonly systemRootToken: string | undefined;
  readonly secretsDir: string;
  readonly runner: CommandRunner | undefined;
  readonly commandTimeout: number;
  readonly clock: Clock;
  readonly instanceTypes: readonly InstanceType[];
  readonly instanceTypeRules: Readonly<InstanceTypeRules>;
}

/** Documented defaults of {@link BatchRunnerOptions}. */
export const BATCH_RUNNER_DEFAULTS = Object.freeze({
  crunchRunCommand: 'crunch-run',
  queueInterval: 10_000,
  vanishGrace: Object.freeze({ misses: 3, ms: 0 }),
  submitRetry: Object.freeze({ initialDelay: 1_000, maxDelay: 60_000, factor: 2, maxAttempts: 10 }),
  submitRate: Object.freeze({ count: 20, periodMs: 1_000 }),
  commandConcurrency: 3,
  neverClearsGrace: 60_000,
  commandTimeout: 60_000,
  prioritySpread: DEFAULT_PRIORITY_SPREAD,
  reserveExtraRam: DEFAULT_RESERVE_EXTRA_RAM,
});

function number(name: string, v: number | undefined, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x < min) {
    throw new RangeError(`${name} must be a number >= ${min}, got ${String(v)}`);
  }
  return x;
}

/** A duration option: a number within {@link checkDuration}'s bounds, the one rule for every duration. */
function duration(name: string, v: number | undefined, dflt: number, min: number): number {
  return checkDuration(name, v ?? dflt, min);
}

function strings(name: string, v: readonly string[] | undefined, dflt: readonly string[]): readonly string[] {
  const x = v ?? dflt;
  // A NUL fails every submission; refused here, once, it never costs a container.
  if (!Array.isArray(x) || !x.every((s) => typeof s === 'string' && !s.includes('\0'))) {
    throw new TypeError(`${name} must be an array of strings without NUL characters`);
  }
  return Object.freeze([...x]);
}

/**
 * Fills in defaults and checks every option.
 *
 * @param defaults - The adapter's default templates.
 * @throws TypeError or RangeError naming the bad option.
 */
export function resolveBatchOptions(
  opts: BatchRunnerOptions,
  defaults: { args: readonly string[]; gpuArgs: readonly string[] },
): ResolvedBatchOptions {
  const d = BATCH_RUNNER_DEFAULTS;
  const env = opts.environment ?? {};
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || typeof v !== 'string') {
      throw new TypeError(`environment must map variable names to strings; bad entry ${JSON.stringify(k)}`);
    }
  }
  checkEnvOptions(env, []);
  checkSystemRootToken(opts.systemRootToken);
  const secretsDir = opts.secretsDir ?? defaultSecretsDir();
  if (typeof secretsDir !== 'string' || !secretsDir.startsWith('/')) throw new TypeError(`secretsDir must be an absolute path, got ${JSON.stringify(secretsDir)}`);
  if (opts.runtimeEngine !== undefined && (typeof opts.runtimeEngine !== 'string' || opts.runtimeEngine === '')) {
    throw new TypeError('runtimeEngine must be a non-empty string when set');
  }
  if (opts.runner !== undefined && typeof opts.runner !== 'function') throw new TypeError('runner must be a function');
  const crunchRunCommand = opts.crunchRunCommand ?? d.crunchRunCommand;
  if (typeof crunchRunCommand !== 'string' || crunchRunCommand === '' || crunchRunCommand.includes('\0')) {
    throw new TypeError('crunchRunCommand must be a non-empty string without NUL characters');
  }
  const retry = opts.submitRetry ?? {};
  const initialDelay = duration('submitRetry.initialDelay', retry.initialDelay, d.submitRetry.initialDelay, 1);
  const grace = opts.vanishGrace ?? {};
  const queueInterval = duration('queueInterval', opts.queueInterval, d.queueInterval, 1);
  const rate = opts.submitRate ?? d.submitRate;
  return {
    crunchRunCommand,
    crunchRunArgs: strings('crunchRunArgs', opts.crunchRunArgs, []),
    runtimeEngine: opts.runtimeEngine,
    args: strings('args', opts.args, defaults.args),
    gpuArgs: strings('gpuArgs', opts.gpuArgs, defaults.gpuArgs),
    reserveExtraRam: number('reserveExtraRam', opts.reserveExtraRam, d.reserveExtraRam, 0),
    prioritySpread: number('prioritySpread', opts.prioritySpread, d.prioritySpread, 0),
    queueInterval,
    queueIntervalMax: duration('queueIntervalMax', opts.queueIntervalMax, Math.max(queueInterval, Math.min(6 * queueInterval, 60_000)), queueInterval),
    vanishGrace: Object.freeze({
      misses: Math.floor(number('vanishGrace.misses', grace.misses, d.vanishGrace.misses, 1)),
      ms: duration('vanishGrace.ms', grace.ms, d.vanishGrace.ms, 0),
    }),
    submitRetry: Object.freeze({
      initialDelay,
      maxDelay: duration('submitRetry.maxDelay', retry.maxDelay, Math.max(d.submitRetry.maxDelay, initialDelay), initialDelay),
      factor: number('submitRetry.factor', retry.factor, d.submitRetry.factor, 1),
      maxAttempts: Math.floor(number('submitRetry.maxAttempts', retry.maxAttempts, d.submitRetry.maxAttempts, 1)),
    }),
    submitRate: Object.freeze({
      count: Math.floor(number('submitRate.count', rate.count, d.submitRate.count, 1)),
      periodMs: duration('submitRate.periodMs', rate.periodMs, d.submitRate.periodMs, 1),
    }),
    commandConcurrency: Math.floor(number('commandConcurrency', opts.commandConcurrency, d.commandConcurrency, 1)),
    neverClearsGrace: duration('neverClearsGrace', opts.neverClearsGrace, d.neverClearsGrace, 0),
    accounting: opts.accounting ?? true,
    environment: Object.freeze({ ...env }),
    systemRootToken: opts.systemRootToken,
    secretsDir,
    runner: opts.runner,
    commandTimeout: duration('commandTimeout', opts.commandTimeout, d.commandTimeout, 1),
    clock: opts.clock ?? realClock,
    instanceTypes: Object.freeze([...(opts.instanceTypes ?? [])]),
    instanceTypeRules: Object.freeze({ ...opts.instanceTypeRules, reserveExtraRam: number('reserveExtraRam', opts.reserveExtraRam, d.reserveExtraRam, 0) }),
  };
}
