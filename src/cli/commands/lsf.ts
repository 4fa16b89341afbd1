/**
 * `arvados-dispatch lsf`: submits the containers of the API's queue to IBM
 * Spectrum LSF as batch jobs (Arvados' `arvados-dispatch-lsf`).
 *
 * @module
 */
import { Dispatcher } from '../../dispatcher/dispatcher.js';
import { DEFAULT_MAX_USER_PRIORITY, LsfRunner } from '../../runners/batch/lsf.js';
import { DEFAULT_BSUB_ARGUMENTS, DEFAULT_BSUB_GPU_ARGUMENTS, DEFAULT_MAX_RUN_TIME_OVERHEAD } from '../../runners/batch/lsf-template.js';
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
export const summary = 'submit queued containers to LSF as batch jobs';

const D = BATCH_RUNNER_DEFAULTS;

const OPTIONS: OptionTable = {
  ...DISPATCHER_OPTIONS,
  'bjobs-interval': { type: 'string', metavar: 'DURATION', default: 'the poll interval', help: 'time between bjobs runs while there is work' },
  'bjobs-interval-max': {
    type: 'string',
    metavar: 'DURATION',
    default: '6 x the bjobs interval, at most 1m',
    help: 'longest time between bjobs runs: the interval doubles while the queue does not change',
  },
  'submit-rate': {
    type: 'string',
    metavar: 'N/PERIOD',
    default: `${D.submitRate.count}/${formatDuration(D.submitRate.periodMs)}`,
    help: 'most bsub, bkill, bmod and accounting commands per period (token bucket), e.g. 20/1s',
  },
  'pending-grace': {
    type: 'string',
    metavar: 'DURATION',
    default: formatDuration(D.neverClearsGrace),
    help: 'how long a job may pend for "There are no suitable hosts for the job" before its container is cancelled with that reason',
  },
  'no-accounting': { type: 'boolean', help: 'do not ask bjobs -a why a job ended' },
  'crunch-run-command': { type: 'string', metavar: 'CMD', default: D.crunchRunCommand, help: 'crunch-run on the execution hosts (not checked on this host)' },
  'crunch-run-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    help: 'argument for crunch-run, before --runtime-engine and the container UUID; write --crunch-run-arg=-x for one that starts with "-"',
  },
  'runtime-engine': { type: 'string', metavar: 'ENGINE', help: 'pass --runtime-engine=ENGINE to crunch-run (docker, singularity)' },
  'bsub-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    default: DEFAULT_BSUB_ARGUMENTS.join(' '),
    help: 'bsub argument template (Containers.LSF.BsubArgumentsList); giving any replaces the default list. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %G GPUs, %W max run time in minutes (a "-W %W" or "-We %W" pair is left out without one), %% a literal %',
  },
  'bsub-gpu-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    default: DEFAULT_BSUB_GPU_ARGUMENTS.join(' '),
    help: 'templates added for containers that want GPUs (BsubGPUArguments)',
  },
  'bsub-sudo-user': { type: 'string', metavar: 'USER', help: 'submit as USER through "sudo -E -u USER bsub" (BsubSudoUser); bjobs then lists USER\'s jobs' },
  'max-run-time-overhead': {
    type: 'string',
    metavar: 'DURATION',
    default: formatDuration(DEFAULT_MAX_RUN_TIME_OVERHEAD),
    help: 'added to a container\'s max_run_time for %W (MaxRunTimeOverhead)',
  },
  'max-run-time-default': { type: 'string', metavar: 'DURATION', default: '0s', help: 'max run time for containers without one (MaxRunTimeDefault); 0 for none' },
  'max-user-priority': {
    type: 'string',
    metavar: 'N',
    default: String(DEFAULT_MAX_USER_PRIORITY),
    help: 'MAX_USER_PRIORITY of lsb.params: pending jobs get user priorities (bmod -sp) counting down from it in Arvados order; 0 turns this off',
  },
  'bsub-env': { type: 'string', multiple: true, metavar: 'NAME=VALUE', help: 'extra environment for bsub and so for the job' },
  'reserve-extra-ram': { type: 'string', metavar: 'SIZE', default: '550MiB', help: 'RAM added to each request for crunch-run itself' },
  'priority-spread': { type: 'string', metavar: 'N', default: '1', help: 'user priority gap between adjacent pending jobs' },
  'vanish-grace-misses': {
    type: 'string',
    metavar: 'N',
    default: String(D.vanishGrace.misses),
    help: 'successful bjobs runs a job must be missing from before its container counts as lost',
  },
  'vanish-grace': { type: 'string', metavar: 'DURATION', default: '0s', help: 'and the least time it must be missing' },
  'submit-retry-max': {
    type: 'string',
    metavar: 'DURATION',
    default: formatDuration(D.submitRetry.maxDelay),
    help: 'longest wait between bsub retries, and between probes while LSF refuses submissions for a limit',
  },
  'command-timeout': { type: 'string', metavar: 'DURATION', default: formatDuration(D.commandTimeout), help: 'kill an LSF command that takes longer' },
  ...OUTPUT_OPTIONS,
};

/** The `--help` text. */
export function help(): string {
  return formatHelp(
    'arvados-dispatch lsf [options]',
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
      'LSF with bsub (job name = container UUID, then the argument templates), as a\n' +
      'batch script on stdin that execs\n' +
      '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
      'The API credentials reach the job through its environment. One bjobs poller\n' +
      'follows our jobs and keeps pending ones in Arvados order (bmod -sp).\n' +
      'Priority 0 kills a job (bkill, until it is gone). A job that leaves the queue\n' +
      'on its own: its container is cancelled if Running, unlocked if Locked, with\n' +
      'the reason from bjobs -a (memory limit, run limit, killed...). A job pending\n' +
      'because no host can ever take it is cancelled with that reason after\n' +
      '--pending-grace. On stop, jobs are left in LSF for the next dispatcher.\n' +
      'Bad templates: exit 2; LSF commands missing on this host: exit 1.',
    OPTIONS,
    DISPATCHING_FOOTER,
  );
}

function environment(entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of entries) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(e);
    if (!m) throw new UsageError(`--bsub-env: "${e}" is not NAME=VALUE; see 'arvados-dispatch lsf --help'`);
    env[m[1]] = m[2];
  }
  return env;
}

/** Runs the command; resolves to the exit status. */
export async function run(argv: string[]): Promise<number> {
  const opts = parseCommandLine(argv, OPTIONS, 'lsf');
  if (opts.flag('help')) {
    process.stdout.write(help());
    return ExitCode.OK;
  }
  const settings = dispatcherSettings(opts);
  const { pollInterval } = settings;
  const queueInterval = opts.duration('bjobs-interval', pollInterval, 1);
  const queueIntervalMax = opts.duration('bjobs-interval-max', Math.max(queueInterval, Math.min(6 * queueInterval, 60_000)), queueInterval);
  const submitRate = opts.rate('submit-rate');
  const bsubArgs = opts.list('bsub-arg');
  const bsubGpuArgs = opts.list('bsub-gpu-arg');
  const sudoUser = opts.string('bsub-sudo-user');
  const statusInterval = opts.duration('status-interval', 30_000);
  const management = managementSettings(opts);
  const out = new Output({ json: opts.flag('json') });
  for (const note of opts.notes) out.warn(note);

  // Fail fast, before any lock, when this host cannot submit to LSF.
  const commands = ['bsub', 'bjobs', 'bkill', ...(opts.integer('max-user-priority', DEFAULT_MAX_USER_PRIORITY, 0) > 0 ? ['bmod'] : []), ...(sudoUser ? ['sudo'] : [])];
  for (const cmd of commands) {
    try {
      findExecutable(cmd);
    } catch (err) {
      throw new CliError(`LSF command ${describeError(err)}: is this an LSF submission host?`);
    }
  }

  let runner: LsfRunner;
  try {
    runner = new LsfRunner({
      crunchRunCommand: opts.string('crunch-run-command'),
      crunchRunArgs: opts.list('crunch-run-arg'),
      runtimeEngine: opts.string('runtime-engine'),
      bsubArgs: bsubArgs.length ? bsubArgs : undefined,
      bsubGpuArgs: bsubGpuArgs.length ? bsubGpuArgs : undefined,
      sudoUser,
      maxRunTimeOverhead: opts.duration('max-run-time-overhead', DEFAULT_MAX_RUN_TIME_OVERHEAD),
      maxRunTimeDefault: opts.duration('max-run-time-default', 0),
      maxUserPriority: opts.integer('max-user-priority', DEFAULT_MAX_USER_PRIORITY, 0),
      environment: environment(opts.list('bsub-env')),
      reserveExtraRam: opts.size('reserve-extra-ram', undefined, 0),
      prioritySpread: opts.integer('priority-spread', 1, 1),
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
    throw new UsageError(`${describeError(err)}; see 'arvados-dispatch lsf --help'`);
  }

  const client = apiClientFromEnv(out, opts);
  await checkReachable(client);
  const d = new Dispatcher({
    client,
    runner,
    ...settings,
    secondSignal: 'exit',
    // On stop the runner returns without touching LSF; only running bsub calls are waited for.
    shutdownTimeout: runner.options.commandTimeout + 5_000,
  });
  const counts = {
    running: () => runner.status.running,
    waiting: () => Math.max(0, runner.status.containers - runner.status.running),
  };
  const reporter = new Reporter(out, d, counts).watchBatch(runner, d);
  const session = {
    shutdown: () => runner.close(),
    stopNotice: () => `leaving ${runner.status.inQueue} LSF job(s) in the queue for the next dispatcher`,
    leftBehind: () => `${runner.status.containers} container(s) being followed`,
  };

  const o = runner.options;
  out.event(
    'start',
    `arvados-dispatch lsf: crunch-run ${o.crunchRunCommand}; ${sudoUser ? `sudo -E -u ${sudoUser} ` : ''}bsub ${o.args.join(' ')}; polling ${client.apiHost} every ${formatDuration(pollInterval)}, bjobs every ${formatDuration(queueInterval)}`,
    {
      crunch_run: o.crunchRunCommand,
      bsub_args: o.args,
      sudo_user: sudoUser ?? null,
      submit_rate: `${o.submitRate.count}/${formatDuration(o.submitRate.periodMs)}`,
      api_host: client.apiHost,
      poll_interval_ms: pollInterval,
      bjobs_interval_ms: queueInterval,
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
