/**
 * `arvados-dispatch sge`: submits the containers of the API's queue to Grid
 * Engine (Son of Grid Engine, Univa/Altair Grid Engine) as batch jobs.
 *
 * @module
 */
import { Dispatcher } from '../../dispatcher/dispatcher.js';
import { DEFAULT_QSUB_ARGUMENTS, SgeRunner } from '../../runners/batch/sge.js';
import { BATCH_RUNNER_DEFAULTS } from '../../runners/batch/options.js';
import { describeError } from '../../util/errors.js';
import { DISPATCHER_OPTIONS, DISPATCHING_FOOTER, OUTPUT_OPTIONS, formatHelp, parseCommandLine, type OptionTable } from '../args.js';
import { formatDuration } from '../duration.js';
import { CliError, ExitCode, UsageError } from '../errors.js';
import { Output } from '../output.js';
import { Reporter } from '../report.js';
import { runSession } from '../session.js';
import { apiClientFromEnv, checkReachable, dispatcherSettings } from '../dispatching.js';
import { managementSettings, startService } from '../service.js';
import { findExecutable } from '../which.js';

/** One line for the overall help. */
export const summary = 'submit queued containers to Grid Engine as batch jobs';

const D = BATCH_RUNNER_DEFAULTS;

const OPTIONS: OptionTable = {
  ...DISPATCHER_OPTIONS,
  'qstat-interval': { type: 'string', metavar: 'DURATION', default: 'the poll interval', help: 'time between qstat runs while there is work' },
  'qstat-interval-max': {
    type: 'string',
    metavar: 'DURATION',
    default: '6 x the qstat interval, at most 1m',
    help: 'longest time between qstat runs: the interval doubles while the queue does not change',
  },
  'submit-rate': {
    type: 'string',
    metavar: 'N/PERIOD',
    default: `${D.submitRate.count}/${formatDuration(D.submitRate.periodMs)}`,
    help: 'most qsub, qdel, qalter and qacct commands per period (token bucket), e.g. 20/1s',
  },
  'pending-grace': {
    type: 'string',
    metavar: 'DURATION',
    default: formatDuration(D.neverClearsGrace),
    help: 'how long a job may stay in the error state (Eqw) before its container is cancelled with that reason',
  },
  'no-accounting': { type: 'boolean', help: 'do not ask qacct why a job ended' },
  'crunch-run-command': { type: 'string', metavar: 'CMD', default: D.crunchRunCommand, help: 'crunch-run on the execution hosts (not checked on this host)' },
  'crunch-run-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    help: 'argument for crunch-run, before --runtime-engine and the container UUID; write --crunch-run-arg=-x for one that starts with "-"',
  },
  'runtime-engine': { type: 'string', metavar: 'ENGINE', help: 'pass --runtime-engine=ENGINE to crunch-run (docker, singularity)' },
  'qsub-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    default: DEFAULT_QSUB_ARGUMENTS.join(' '),
    help: 'qsub argument template; giving any replaces the default list. Resources are site-specific, e.g. --qsub-arg=-l --qsub-arg=h_vmem=%MM --qsub-arg=-pe --qsub-arg=smp --qsub-arg=%C. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %G GPUs, %P partitions (as a queue list), %W max run time in minutes (an option whose %P or %W is empty is left out with its value), %% a literal %',
  },
  'qsub-gpu-arg': { type: 'string', multiple: true, metavar: 'ARG', help: 'templates added for containers that want GPUs (none by default), e.g. -l gpu=%G' },
  'qsub-env': { type: 'string', multiple: true, metavar: 'NAME=VALUE', help: 'extra environment for qsub and so for the job' },
  'reserve-extra-ram': { type: 'string', metavar: 'SIZE', default: '550MiB', help: 'RAM added to each request for crunch-run itself' },
  'priority-spread': { type: 'string', metavar: 'N', default: String(D.prioritySpread), help: 'qalter -p gap between adjacent pending jobs' },
  'vanish-grace-misses': {
    type: 'string',
    metavar: 'N',
    default: String(D.vanishGrace.misses),
    help: 'successful qstat runs a job must be missing from before its container counts as lost',
  },
  'vanish-grace': { type: 'string', metavar: 'DURATION', default: '0s', help: 'and the least time it must be missing' },
  'submit-retry-max': {
    type: 'string',
    metavar: 'DURATION',
    default: formatDuration(D.submitRetry.maxDelay),
    help: 'longest wait between qsub retries, and between probes while Grid Engine refuses submissions for a limit',
  },
  'command-timeout': { type: 'string', metavar: 'DURATION', default: formatDuration(D.commandTimeout), help: 'kill a Grid Engine command that takes longer' },
  ...OUTPUT_OPTIONS,
};

/** The `--help` text. */
export function help(): string {
  return formatHelp(
    'arvados-dispatch sge [options]',
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
      'Grid Engine with qsub -terse -N <container-uuid> -S /bin/sh -r n -V, then the\n' +
      'argument templates, as a batch script on stdin that execs\n' +
      '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
      'The API credentials reach the job through its environment (-V). One qstat\n' +
      'poller follows our jobs and keeps pending ones in Arvados order (qalter -p;\n' +
      'without operator rights it only ever lowers priorities). Priority 0 deletes a\n' +
      'job (qdel, until it is gone; set the queue\'s terminate_method to SIGTERM so\n' +
      'that crunch-run can stop its container). A job that leaves the queue on its\n' +
      'own: its container is cancelled if Running, unlocked if Locked, with the\n' +
      'reason from qacct (h_vmem, h_rt, deleted...). A job in the error state (Eqw)\n' +
      'is cancelled with that reason after --pending-grace. On stop, jobs are left\n' +
      'in Grid Engine for the next dispatcher. Bad templates: exit 2; Grid Engine\n' +
      'commands missing on this host: exit 1.',
    OPTIONS,
    DISPATCHING_FOOTER,
  );
}

function environment(entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of entries) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(e);
    if (!m) throw new UsageError(`--qsub-env: "${e}" is not NAME=VALUE; see 'arvados-dispatch sge --help'`);
    env[m[1]] = m[2];
  }
  return env;
}

/** Runs the command; resolves to the exit status. */
export async function run(argv: string[]): Promise<number> {
  const opts = parseCommandLine(argv, OPTIONS, 'sge');
  if (opts.flag('help')) {
    process.stdout.write(help());
    return ExitCode.OK;
  }
  const settings = dispatcherSettings(opts);
  const { pollInterval } = settings;
  const queueInterval = opts.duration('qstat-interval', pollInterval, 1);
  const queueIntervalMax = opts.duration('qstat-interval-max', Math.max(queueInterval, Math.min(6 * queueInterval, 60_000)), queueInterval);
  const submitRate = opts.rate('submit-rate');
  const qsubArgs = opts.list('qsub-arg');
  const qsubGpuArgs = opts.list('qsub-gpu-arg');
  const statusInterval = opts.duration('status-interval', 30_000);
  const management = managementSettings(opts);
  const out = new Output({ json: opts.flag('json') });
  for (const note of opts.notes) out.warn(note);

  // Fail fast, before any lock, when this host cannot submit to Grid Engine.
  for (const cmd of ['qsub', 'qstat', 'qdel', 'qalter', ...(opts.flag('no-accounting') ? [] : ['qacct'])]) {
    try {
      findExecutable(cmd);
    } catch (err) {
      throw new CliError(`Grid Engine command ${describeError(err)}: is this a Grid Engine submit host?`);
    }
  }

  let runner: SgeRunner;
  try {
    runner = new SgeRunner({
      crunchRunCommand: opts.string('crunch-run-command'),
      crunchRunArgs: opts.list('crunch-run-arg'),
      runtimeEngine: opts.string('runtime-engine'),
      qsubArgs: qsubArgs.length ? qsubArgs : undefined,
      qsubGpuArgs: qsubGpuArgs.length ? qsubGpuArgs : undefined,
      environment: environment(opts.list('qsub-env')),
      reserveExtraRam: opts.size('reserve-extra-ram', undefined, 0),
      prioritySpread: opts.integer('priority-spread', undefined, 0),
      queueInterval,
      queueIntervalMax,
      submitRate,
      neverClearsGrace: opts.duration('pending-grace', D.neverClearsGrace),
      accounting: !opts.flag('no-accounting'),
      vanishGrace: { misses: opts.integer('vanish-grace-misses', undefined, 1), ms: opts.duration('vanish-grace', 0) },
      submitRetry: { maxDelay: opts.duration('submit-retry-max', D.submitRetry.maxDelay, D.submitRetry.initialDelay) },
      commandTimeout: opts.duration('command-timeout', D.commandTimeout, 1),
    });
  } catch (err) {
    // A bad template or option: one line, exit 2, before any lock.
    throw new UsageError(`${describeError(err)}; see 'arvados-dispatch sge --help'`);
  }

  const client = apiClientFromEnv(out, opts);
  await checkReachable(client);
  const d = new Dispatcher({
    client,
    runner,
    ...settings,
    secondSignal: 'exit',
    // On stop the runner returns without touching Grid Engine; only running qsub calls are waited for.
    shutdownTimeout: runner.options.commandTimeout + 5_000,
  });
  const counts = {
    running: () => runner.status.running,
    waiting: () => Math.max(0, runner.status.containers - runner.status.running),
  };
  const reporter = new Reporter(out, d, counts).watchBatch(runner, d);
  const session = {
    shutdown: () => runner.close(),
    stopNotice: () => `leaving ${runner.status.inQueue} Grid Engine job(s) in the queue for the next dispatcher`,
    leftBehind: () => `${runner.status.containers} container(s) being followed`,
  };

  const o = runner.options;
  out.event(
    'start',
    `arvados-dispatch sge: crunch-run ${o.crunchRunCommand}; qsub ${o.args.join(' ')}; polling ${client.apiHost} every ${formatDuration(pollInterval)}, qstat every ${formatDuration(queueInterval)}`,
    {
      crunch_run: o.crunchRunCommand,
      qsub_args: o.args,
      submit_rate: `${o.submitRate.count}/${formatDuration(o.submitRate.periodMs)}`,
      api_host: client.apiHost,
      poll_interval_ms: pollInterval,
      qstat_interval_ms: queueInterval,
      pid: process.pid,
    },
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
