/**
 * `arvados-dispatch slurm`: submits the containers of the API's queue to
 * Slurm as batch jobs (crunch-dispatch-slurm).
 *
 * @module
 */
import { Dispatcher } from '../../dispatcher/dispatcher.js';
import { SLURM_RUNNER_DEFAULTS } from '../../runners/slurm/options.js';
import { SlurmRunner } from '../../runners/slurm/slurm-runner.js';
import { DEFAULT_SBATCH_ARGUMENTS, DEFAULT_SBATCH_GPU_ARGUMENTS } from '../../runners/slurm/template.js';
import { DISPATCHER_OPTIONS, DISPATCHING_FOOTER, OUTPUT_OPTIONS, Options, formatHelp, parseOptions, type OptionTable } from '../args.js';
import { formatDuration } from '../duration.js';
import { CliError, ExitCode, UsageError } from '../errors.js';
import { Output } from '../output.js';
import { Reporter } from '../report.js';
import { runSession } from '../session.js';
import { apiClientFromEnv, dispatcherSettings } from '../dispatching.js';
import { findExecutable } from '../which.js';

/** One line for the overall help. */
export const summary = 'submit queued containers to Slurm as batch jobs';

const D = SLURM_RUNNER_DEFAULTS;

const OPTIONS: OptionTable = {
  ...DISPATCHER_OPTIONS,
  'squeue-interval': { type: 'string', metavar: 'DURATION', default: 'the poll interval', help: 'time between squeue runs' },
  'crunch-run-command': {
    type: 'string',
    metavar: 'CMD',
    default: D.crunchRunCommand,
    help: 'crunch-run on the compute nodes (not checked on this host)',
  },
  'crunch-run-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    help: 'argument for crunch-run, before --runtime-engine and the container UUID; write --crunch-run-arg=-x for one that starts with "-"',
  },
  'runtime-engine': { type: 'string', metavar: 'ENGINE', help: 'pass --runtime-engine=ENGINE to crunch-run (docker, singularity)' },
  'sbatch-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    default: DEFAULT_SBATCH_ARGUMENTS.join(' '),
    help: 'sbatch argument template; giving any replaces the default list. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %P partitions, %G GPUs, %W max run time in minutes, %I instance type, %% a literal %',
  },
  'sbatch-gpu-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    default: DEFAULT_SBATCH_GPU_ARGUMENTS.join(' '),
    help: 'templates added for containers that want GPUs',
  },
  'sbatch-env': { type: 'string', multiple: true, metavar: 'NAME=VALUE', help: 'extra environment for sbatch and so for the job' },
  'reserve-extra-ram': { type: 'string', metavar: 'SIZE', default: '550MiB', help: 'RAM added to each request for crunch-run itself' },
  'priority-spread': { type: 'string', metavar: 'N', default: String(D.prioritySpread), help: 'nice gap between adjacent pending jobs' },
  'vanish-grace-misses': {
    type: 'string',
    metavar: 'N',
    default: String(D.vanishGrace.misses),
    help: 'successful squeue runs a job must be missing from before its container counts as lost',
  },
  'vanish-grace': { type: 'string', metavar: 'DURATION', default: '0s', help: 'and the least time it must be missing' },
  'submit-retry-max': {
    type: 'string',
    metavar: 'DURATION',
    default: formatDuration(D.submitRetry.maxDelay),
    help: 'longest wait between sbatch retries, and between probes while Slurm refuses submissions for a limit',
  },
  'job-output-dir': {
    type: 'string',
    metavar: 'DIR',
    default: D.jobOutputDir ?? '',
    help: 'absolute directory on the compute nodes for --chdir and the job output files; "none" adds neither',
  },
  'command-timeout': { type: 'string', metavar: 'DURATION', default: formatDuration(D.commandTimeout), help: 'kill a Slurm command that takes longer' },
  ...OUTPUT_OPTIONS,
};

/** The `--help` text. */
export function help(): string {
  return formatHelp(
    'arvados-dispatch slurm [options]',
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
      'Slurm with sbatch (job name = container UUID, --nice=10000 --no-requeue, then\n' +
      'the argument templates), as a batch script that execs\n' +
      '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
      'The API credentials reach the job through its environment. One squeue poller\n' +
      'follows the jobs and renices pending ones to follow Arvados priorities.\n' +
      'Priority 0 cancels a job (scancel; running jobs get SIGTERM). A job that\n' +
      'leaves the queue on its own: its container is cancelled if Running, unlocked\n' +
      'if Locked. On stop, jobs are left in Slurm for the next dispatcher.',
    OPTIONS,
    DISPATCHING_FOOTER,
  );
}

function environment(entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of entries) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(e);
    if (!m) throw new UsageError(`--sbatch-env: "${e}" is not NAME=VALUE; see 'arvados-dispatch slurm --help'`);
    env[m[1]] = m[2];
  }
  return env;
}

/** Runs the command; resolves to the exit status. */
export async function run(argv: string[]): Promise<number> {
  const opts = new Options(parseOptions(argv, OPTIONS, 'slurm'), 'slurm');
  if (opts.flag('help')) {
    process.stdout.write(help());
    return ExitCode.OK;
  }
  const settings = dispatcherSettings(opts);
  const { pollInterval } = settings;
  const queueInterval = opts.duration('squeue-interval', pollInterval, 1);
  const sbatchArgs = opts.list('sbatch-arg');
  const sbatchGpuArgs = opts.list('sbatch-gpu-arg');
  const outputDir = opts.string('job-output-dir');
  const statusInterval = opts.duration('status-interval', 30_000);
  const out = new Output({ json: opts.flag('json') });

  // Fail fast, with a clear message, when this host has no Slurm client.
  for (const cmd of ['sbatch', 'squeue', 'scancel', 'scontrol']) {
    try {
      findExecutable(cmd);
    } catch (err) {
      throw new CliError(`Slurm command ${(err as Error).message}: is this a Slurm submit host?`);
    }
  }

  let runner: SlurmRunner;
  try {
    runner = new SlurmRunner({
      crunchRunCommand: opts.string('crunch-run-command'),
      crunchRunArgs: opts.list('crunch-run-arg'),
      runtimeEngine: opts.string('runtime-engine'),
      sbatchArgs: sbatchArgs.length ? sbatchArgs : undefined,
      sbatchGpuArgs: sbatchGpuArgs.length ? sbatchGpuArgs : undefined,
      environment: environment(opts.list('sbatch-env')),
      reserveExtraRam: opts.size('reserve-extra-ram', undefined, 0),
      prioritySpread: opts.integer('priority-spread', undefined, 0),
      queueInterval,
      vanishGrace: { misses: opts.integer('vanish-grace-misses', undefined, 1), ms: opts.duration('vanish-grace', 0) },
      submitRetry: { maxDelay: opts.duration('submit-retry-max', D.submitRetry.maxDelay, D.submitRetry.initialDelay) },
      jobOutputDir: outputDir === 'none' ? null : outputDir,
      commandTimeout: opts.duration('command-timeout', D.commandTimeout, 1),
    });
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${(err as Error).message.replace(/^SlurmRunner: /, '')}; see 'arvados-dispatch slurm --help'`);
  }

  const client = apiClientFromEnv(out);

  const d = new Dispatcher({
    client,
    runContainer: runner.runContainer,
    ...settings,
    handleSignals: false,
    // On stop the runner returns without touching Slurm; only running sbatch calls are waited for.
    shutdownTimeout: runner.options.commandTimeout + 5_000,
  });
  runner.attach(d);
  const counts = {
    running: () => runner.status.queued,
    waiting: () => Math.max(0, runner.status.containers - runner.status.queued),
  };
  const reporter = new Reporter(out, d, counts).watchSlurm(runner, d);
  const session = {
    shutdown: () => runner.close(),
    stopNotice: () => `leaving ${runner.status.queued} Slurm job(s) in the queue for the next dispatcher`,
    leftBehind: () => `${runner.status.containers} container(s) being followed`,
  };

  const o = runner.options;
  out.event(
    'start',
    `arvados-dispatch slurm: crunch-run ${o.crunchRunCommand}; sbatch ${o.sbatchArgs.join(' ')}; polling ${client.apiHost} every ${formatDuration(pollInterval)}, squeue every ${formatDuration(queueInterval)}`,
    { crunch_run: o.crunchRunCommand, sbatch_args: o.sbatchArgs, api_host: client.apiHost, poll_interval_ms: pollInterval, squeue_interval_ms: queueInterval, pid: process.pid },
  );
  try {
    await runSession({ out, dispatcher: d, runner: session, reporter, statusInterval });
  } finally {
    await runner.close();
  }
  return ExitCode.OK;
}
