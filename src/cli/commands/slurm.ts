/**
 * `arvados-dispatch slurm`: submits the containers of the API's queue to
 * Slurm as batch jobs (crunch-dispatch-slurm).
 *
 * @module
 */
import { Dispatcher } from '../../dispatcher/dispatcher.js';
import { DEFAULT_SBATCH_ARGUMENTS, DEFAULT_SBATCH_GPU_ARGUMENTS, SLURM_RUNNER_DEFAULTS, SlurmRunner } from '../../runners/batch/slurm.js';
import { describeError } from '../../util/errors.js';
import { DISPATCHER_OPTIONS, DISPATCHING_FOOTER, OUTPUT_OPTIONS, formatHelp, parseCommandLine, type OptionTable } from '../args.js';
import { formatDuration } from '../duration.js';
import { ExitCode, UsageError } from '../errors.js';
import { Output } from '../output.js';
import { Reporter } from '../report.js';
import { runSession } from '../session.js';
import { apiClientFromEnv, checkReachable, dispatcherSettings } from '../dispatching.js';
import { managementSettings, startService } from '../service.js';
import { findExecutable } from '../which.js';

/** One line for the overall help. */
export const summary = 'submit queued containers to Slurm as batch jobs';

const D = SLURM_RUNNER_DEFAULTS;

const OPTIONS: OptionTable = {
  ...DISPATCHER_OPTIONS,
  'squeue-interval': { type: 'string', metavar: 'DURATION', default: 'the poll interval', help: 'time between squeue runs while there is work' },
  'squeue-interval-max': {
    type: 'string',
    metavar: 'DURATION',
    default: '6 x the squeue interval, at most 1m',
    help: 'longest time between squeue runs: the interval doubles while the queue does not change, and drops back when it does',
  },
  'squeue-all': { type: 'boolean', help: "run squeue --all (also jobs in hidden partitions, as Go's dispatcher does); still only this user's jobs" },
  'submit-rate': {
    type: 'string',
    metavar: 'N/PERIOD',
    default: `${D.submitRate.count}/${formatDuration(D.submitRate.periodMs)}`,
    help: 'most sbatch, scancel, scontrol and sacct commands per period (token bucket), e.g. 20/1s or 100/1m',
  },
  'pending-grace': {
    type: 'string',
    metavar: 'DURATION',
    default: formatDuration(D.neverClearsGrace),
    help: 'how long a job may stay pending for a reason that can never clear (BadConstraints, PartitionConfig...) before its container is cancelled with that reason',
  },
  'no-accounting': { type: 'boolean', help: 'do not ask sacct / scontrol show job why a job ended' },
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
      'if Locked, with the reason from sacct (or scontrol show job): out of memory,\n' +
      'time limit, node failure... A job pending for a reason that can never clear\n' +
      'is cancelled with that reason after --pending-grace. Slurm commands share\n' +
      'one limiter (3 at once, --submit-rate). On stop, jobs are left in Slurm for\n' +
      'the next dispatcher. Bad templates or missing Slurm commands: exit 2.',
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
  const opts = parseCommandLine(argv, OPTIONS, 'slurm');
  if (opts.flag('help')) {
    process.stdout.write(help());
    return ExitCode.OK;
  }
  const settings = dispatcherSettings(opts);
  const { pollInterval } = settings;
  const queueInterval = opts.duration('squeue-interval', pollInterval, 1);
  const queueIntervalMax = opts.duration('squeue-interval-max', Math.max(queueInterval, Math.min(6 * queueInterval, 60_000)), queueInterval);
  const submitRate = opts.rate('submit-rate');
  const sbatchArgs = opts.list('sbatch-arg');
  const sbatchGpuArgs = opts.list('sbatch-gpu-arg');
  const outputDir = opts.string('job-output-dir');
  const statusInterval = opts.duration('status-interval', 30_000);
  const management = managementSettings(opts);
  const out = new Output({ json: opts.flag('json') });
  for (const note of opts.notes) out.warn(note);

  // Fail fast, before any lock, when this host has no Slurm client.
  for (const cmd of ['sbatch', 'squeue', 'scancel', 'scontrol']) {
    try {
      findExecutable(cmd);
    } catch (err) {
      throw new UsageError(`Slurm command ${(err as Error).message}: is this a Slurm submit host?`);
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
      queueIntervalMax,
      squeueAll: opts.flag('squeue-all'),
      submitRate,
      neverClearsGrace: opts.duration('pending-grace', D.neverClearsGrace),
      accounting: !opts.flag('no-accounting'),
      vanishGrace: { misses: opts.integer('vanish-grace-misses', undefined, 1), ms: opts.duration('vanish-grace', 0) },
      submitRetry: { maxDelay: opts.duration('submit-retry-max', D.submitRetry.maxDelay, D.submitRetry.initialDelay) },
      jobOutputDir: outputDir === 'none' ? null : outputDir,
      commandTimeout: opts.duration('command-timeout', D.commandTimeout, 1),
    });
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // A bad template or option: one line, exit 2, before any lock.
    throw new UsageError(`${describeError(err)}; see 'arvados-dispatch slurm --help'`);
  }

  const client = apiClientFromEnv(out, opts);
  await checkReachable(client);

  const d = new Dispatcher({
    client,
    runner,
    ...settings,
    secondSignal: 'exit',
    // On stop the runner returns without touching Slurm; only running sbatch calls are waited for.
    shutdownTimeout: runner.options.commandTimeout + 5_000,
  });
  const counts = {
    running: () => runner.status.running,
    waiting: () => Math.max(0, runner.status.containers - runner.status.running),
  };
  const reporter = new Reporter(out, d, counts).watchBatch(runner, d);
  const session = {
    shutdown: () => runner.close(),
    stopNotice: () => `leaving ${runner.status.inQueue} Slurm job(s) in the queue for the next dispatcher`,
    leftBehind: () => `${runner.status.containers} container(s) being followed`,
  };

  const o = runner.options;
  out.event(
    'start',
    `arvados-dispatch slurm: crunch-run ${o.crunchRunCommand}; sbatch ${o.args.join(' ')}; polling ${client.apiHost} every ${formatDuration(pollInterval)}, squeue every ${formatDuration(queueInterval)}`,
    { crunch_run: o.crunchRunCommand, sbatch_args: o.args, submit_rate: `${o.submitRate.count}/${formatDuration(o.submitRate.periodMs)}`, api_host: client.apiHost, poll_interval_ms: pollInterval, squeue_interval_ms: queueInterval, pid: process.pid },
  );
  const service = management ? await startService(management, out, d, pollInterval, { batch: runner }) : undefined;
  try {
    await runSession({ out, dispatcher: d, runner: session, reporter, statusInterval });
  } finally {
    await runner.close();
    await service?.close();
  }
  return ExitCode.OK;
}
