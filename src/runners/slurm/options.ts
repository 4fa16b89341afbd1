/**
 * Options of the Slurm runner, with their defaults, and their validation.
 *
 * @module
 */
import type { CommandRunner } from './commands.js';
import { DEFAULT_PRIORITY_SPREAD } from './nice.js';
import { DEFAULT_RESERVE_EXTRA_RAM, DEFAULT_SBATCH_ARGUMENTS, DEFAULT_SBATCH_GPU_ARGUMENTS } from './template.js';

/**
 * How long a job may be missing from squeue before its container counts as
 * lost. Both conditions must hold: at least `misses` successful squeue runs
 * in a row without the job, *and* at least `ms` milliseconds since the first
 * of them. Failed squeue runs count as neither.
 */
export interface VanishGrace {
  /** Consecutive successful squeue runs without the job. Default 3 (at least 1). */
  misses?: number;
  /** Milliseconds since the first miss. Default 0. */
  ms?: number;
}

/**
 * Backoff between sbatch attempts after a transient failure (Slurm
 * unreachable, timed out…): `initialDelay`, then × `factor` per attempt up to
 * `maxDelay`, each with up to 50 % random reduction so that many containers
 * do not retry in lockstep. There is no attempt limit: the container stays
 * Locked, visibly waiting, until Slurm answers or it is cancelled.
 */
export interface RetryBackoff {
  /** First delay in ms. Default 1 000. */
  initialDelay?: number;
  /**
   * Largest delay in ms. Default 60 000. Also how long submissions stay
   * paused after a submit-limit refusal before one submission probes again,
   * if none of our jobs has left the queue meanwhile.
   */
  maxDelay?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
}

/** Paths of the Slurm commands; each defaults to its bare name, found on `PATH`. */
export interface SlurmCommands {
  sbatch?: string;
  squeue?: string;
  scancel?: string;
  scontrol?: string;
}

/** Options of {@link SlurmRunner}. Every one is optional. */
export interface SlurmRunnerOptions {
  /** The crunch-run executable the batch script `exec`s. Default `crunch-run`. */
  crunchRunCommand?: string;
  /** Arguments after the command, before `--runtime-engine` and the UUID. Default none. */
  crunchRunArgs?: readonly string[];
  /** Passed as `--runtime-engine=<engine>` (e.g. `docker`, `singularity`) when set. Default unset. */
  runtimeEngine?: string;
  /**
   * sbatch argument templates (`SbatchArgumentsList`), with the `%U %C %M %T
   * %P %G %W %I %%` substitutions of `template.ts`. Default
   * `--job-name=%U --mem=%M --cpus-per-task=%C --tmp=%T --partition=%P`.
   * The job name must stay the container UUID: the runner finds jobs by name.
   */
  sbatchArgs?: readonly string[];
  /** Templates added when the container wants GPUs (`SbatchGPUArgumentsList`). Default `--gpus=%G`. */
  sbatchGpuArgs?: readonly string[];
  /** Bytes of RAM added to each container's request for crunch-run itself. Default 550 MiB. */
  reserveExtraRam?: number;
  /**
   * Gap between the nice values of adjacent jobs when the queue is reordered
   * to follow Arvados priorities; below 1 means 10. Default 10.
   */
  prioritySpread?: number;
  /**
   * Milliseconds between squeue runs. Default 10 000, the Dispatcher's
   * default poll interval; use the same value as the dispatcher's.
   */
  queueInterval?: number;
  /** When a job missing from squeue counts as lost. Default `{ misses: 3, ms: 0 }`. */
  vanishGrace?: VanishGrace;
  /** Backoff between sbatch attempts after transient failures. */
  submitRetry?: RetryBackoff;
  /**
   * Absolute directory for each job's output (`--output=<dir>/crunch-run-%x-%j.out`,
   * i.e. named by container UUID and job ID) and working directory
   * (`--chdir=<dir>`). It must exist on the compute nodes. `null` adds
   * neither, for sites that set them in `sbatchArgs`. Default `/tmp`.
   */
  jobOutputDir?: string | null;
  /**
   * Extra environment variables for sbatch, which passes its environment on
   * to the job and so to crunch-run (`SbatchEnvironmentVariables`). Besides
   * these, sbatch gets `PATH`, `HOME`, `USER`, `LOGNAME`, `LANG`, `LC_ALL`,
   * `TZ`, `TMPDIR`, `SLURM_CONF` and every `SBATCH_*` variable from this
   * process's environment, and then the dispatcher's API credentials and the
   * container's `GatewayAuthSecret`, which win over anything else.
   */
  environment?: Readonly<Record<string, string>>;
  /** Where the Slurm commands are. */
  commands?: SlurmCommands;
  /**
   * Runs commands instead of spawning them (for tests). sbatch, scancel and
   * scontrol still go through the process-wide limit of 3 at a time.
   * Default: spawn them.
   */
  runner?: CommandRunner;
  /** Kill a Slurm command that runs longer than this many ms. Default 60 000. */
  commandTimeout?: number;
  /** Whose jobs squeue lists. Default the user this process runs as. */
  squeueUser?: string;
}

/** {@link SlurmRunnerOptions} with every default filled in. */
export interface ResolvedSlurmOptions {
  crunchRunCommand: string;
  crunchRunArgs: readonly string[];
  runtimeEngine: string | undefined;
  sbatchArgs: readonly string[];
  sbatchGpuArgs: readonly string[];
  reserveExtraRam: number;
  prioritySpread: number;
  queueInterval: number;
  vanishGrace: Required<VanishGrace>;
  submitRetry: Required<RetryBackoff>;
  jobOutputDir: string | null;
  environment: Readonly<Record<string, string>>;
  commands: Required<SlurmCommands>;
  runner: CommandRunner | undefined;
  commandTimeout: number;
  squeueUser: string | undefined;
}

/** Documented defaults of {@link SlurmRunnerOptions}. */
export const SLURM_RUNNER_DEFAULTS = Object.freeze({
  crunchRunCommand: 'crunch-run',
  queueInterval: 10_000,
  vanishGrace: Object.freeze({ misses: 3, ms: 0 }),
  submitRetry: Object.freeze({ initialDelay: 1_000, maxDelay: 60_000, factor: 2 }),
  jobOutputDir: '/tmp',
  commandTimeout: 60_000,
  prioritySpread: DEFAULT_PRIORITY_SPREAD,
  reserveExtraRam: DEFAULT_RESERVE_EXTRA_RAM,
});

function number(name: string, v: number | undefined, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x < min) {
    throw new RangeError(`SlurmRunner: ${name} must be a number >= ${min}, got ${String(v)}`);
  }
  return x;
}

function strings(name: string, v: readonly string[] | undefined, dflt: readonly string[]): readonly string[] {
  const x = v ?? dflt;
  if (!Array.isArray(x) || !x.every((s) => typeof s === 'string')) {
    throw new TypeError(`SlurmRunner: ${name} must be an array of strings`);
  }
  return Object.freeze([...x]);
}

function command(name: string, v: string | undefined, dflt: string): string {
  const x = v ?? dflt;
  if (typeof x !== 'string' || x === '') throw new TypeError(`SlurmRunner: ${name} must be a non-empty string`);
  return x;
}

/** Fills in defaults and checks every option; throws `TypeError`/`RangeError` naming the bad one. */
export function resolveSlurmOptions(opts: SlurmRunnerOptions = {}): ResolvedSlurmOptions {
  const d = SLURM_RUNNER_DEFAULTS;
  const outDir = opts.jobOutputDir === undefined ? d.jobOutputDir : opts.jobOutputDir;
  if (outDir !== null && (typeof outDir !== 'string' || !outDir.startsWith('/') || outDir.includes('\\'))) {
    throw new TypeError(`SlurmRunner: jobOutputDir must be an absolute path without backslashes, or null; got ${JSON.stringify(outDir)}`);
  }
  const env = opts.environment ?? {};
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || typeof v !== 'string') {
      throw new TypeError(`SlurmRunner: environment must map variable names to strings; bad entry ${JSON.stringify(k)}`);
    }
  }
  if (opts.runtimeEngine !== undefined && (typeof opts.runtimeEngine !== 'string' || opts.runtimeEngine === '')) {
    throw new TypeError('SlurmRunner: runtimeEngine must be a non-empty string when set');
  }
  if (opts.runner !== undefined && typeof opts.runner !== 'function') throw new TypeError('SlurmRunner: runner must be a function');
  const retry = opts.submitRetry ?? {};
  const initialDelay = number('submitRetry.initialDelay', retry.initialDelay, d.submitRetry.initialDelay, 1);
  const grace = opts.vanishGrace ?? {};
  return {
    crunchRunCommand: command('crunchRunCommand', opts.crunchRunCommand, d.crunchRunCommand),
    crunchRunArgs: strings('crunchRunArgs', opts.crunchRunArgs, []),
    runtimeEngine: opts.runtimeEngine,
    sbatchArgs: strings('sbatchArgs', opts.sbatchArgs, DEFAULT_SBATCH_ARGUMENTS),
    sbatchGpuArgs: strings('sbatchGpuArgs', opts.sbatchGpuArgs, DEFAULT_SBATCH_GPU_ARGUMENTS),
    reserveExtraRam: number('reserveExtraRam', opts.reserveExtraRam, d.reserveExtraRam, 0),
    prioritySpread: number('prioritySpread', opts.prioritySpread, d.prioritySpread, 0),
    queueInterval: number('queueInterval', opts.queueInterval, d.queueInterval, 1),
    vanishGrace: {
      misses: Math.floor(number('vanishGrace.misses', grace.misses, d.vanishGrace.misses, 1)),
      ms: number('vanishGrace.ms', grace.ms, d.vanishGrace.ms, 0),
    },
    submitRetry: {
      initialDelay,
      maxDelay: number('submitRetry.maxDelay', retry.maxDelay, Math.max(d.submitRetry.maxDelay, initialDelay), initialDelay),
      factor: number('submitRetry.factor', retry.factor, d.submitRetry.factor, 1),
    },
    jobOutputDir: outDir === null ? null : outDir.replace(/(?<=.)\/+$/, ''),
    environment: Object.freeze({ ...env }),
    commands: {
      sbatch: command('commands.sbatch', opts.commands?.sbatch, 'sbatch'),
      squeue: command('commands.squeue', opts.commands?.squeue, 'squeue'),
      scancel: command('commands.scancel', opts.commands?.scancel, 'scancel'),
      scontrol: command('commands.scontrol', opts.commands?.scontrol, 'scontrol'),
    },
    runner: opts.runner,
    commandTimeout: number('commandTimeout', opts.commandTimeout, d.commandTimeout, 1),
    squeueUser: opts.squeueUser,
  };
}
