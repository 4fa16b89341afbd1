/**
 * `arvados-dispatch local`: runs the containers of the API's queue as
 * crunch-run processes on this machine (crunch-dispatch-local).
 *
 * @module
 */
import os from 'node:os';
import { Dispatcher } from '../../dispatcher/dispatcher.js';
import { DEFAULT_STOP_GRACE, DEFAULT_KILL_GRACE, LocalRunner } from '../../runners/local/local-runner.js';
import { formatBytes } from '../../runners/local/resources.js';
import { DISPATCHER_OPTIONS, DISPATCHING_FOOTER, OUTPUT_OPTIONS, Options, formatHelp, parseOptions, type OptionTable } from '../args.js';
import { formatDuration } from '../duration.js';
import { CliError, ExitCode } from '../errors.js';
import { Output } from '../output.js';
import { Reporter } from '../report.js';
import { runSession } from '../session.js';
import { apiClientFromEnv, dispatcherSettings } from '../dispatching.js';
import { localSession } from '../local-session.js';
import { findExecutable } from '../which.js';

/** One line for the overall help. */
export const summary = 'run queued containers as crunch-run processes on this machine';

const OPTIONS: OptionTable = {
  ...DISPATCHER_OPTIONS,
  'crunch-run-command': { type: 'string', metavar: 'CMD', default: 'crunch-run', help: 'crunch-run executable: a name on PATH or a path' },
  'crunch-run-arg': {
    type: 'string',
    multiple: true,
    metavar: 'ARG',
    help: 'argument for crunch-run, put before the container UUID; write --crunch-run-arg=-x for one that starts with "-"',
  },
  'runtime-engine': { type: 'string', metavar: 'ENGINE', help: 'pass --runtime-engine=ENGINE to crunch-run (docker, singularity)' },
  vcpus: { type: 'string', metavar: 'N', default: `${os.availableParallelism()}: this machine's CPUs`, help: 'vCPUs to hand out to containers' },
  ram: {
    type: 'string',
    metavar: 'SIZE',
    default: `${formatBytes(os.totalmem())}: this machine's memory`,
    help: 'RAM to hand out to containers: 64GiB, 512MiB, 8G (decimal) or bytes',
  },
  'reserve-extra-ram': {
    type: 'string',
    metavar: 'SIZE',
    default: '550MiB',
    help: 'RAM counted per container on top of ram + keep_cache_ram, for crunch-run and the runtime',
  },
  'stop-grace': {
    type: 'string',
    metavar: 'DURATION',
    default: formatDuration(DEFAULT_STOP_GRACE),
    help: `how long crunch-run gets after SIGINT before SIGTERM; SIGKILL follows ${formatDuration(DEFAULT_KILL_GRACE)} later`,
  },
  ...OUTPUT_OPTIONS,
};

/** The `--help` text. */
export function help(): string {
  return formatHelp(
    'arvados-dispatch local [options]',
    'Polls the Arvados API for queued containers, locks them and runs each as\n' +
      '  <crunch-run-command> [--runtime-engine=E] [ARG...] <container-uuid>\n' +
      "within this machine's vCPUs, RAM and GPUs (CUDA_VISIBLE_DEVICES or\n" +
      'AMD_VISIBLE_DEVICES). crunch-run gets only PATH, TMPDIR and the API\n' +
      'credentials in its environment. Priority 0 or a stop sends it SIGINT, then\n' +
      'SIGTERM and SIGKILL if it does not exit.',
    OPTIONS,
    DISPATCHING_FOOTER,
  );
}

/** Runs the command; resolves to the exit status. */
export async function run(argv: string[]): Promise<number> {
  const opts = new Options(parseOptions(argv, OPTIONS, 'local'), 'local');
  if (opts.flag('help')) {
    process.stdout.write(help());
    return ExitCode.OK;
  }
  const settings = dispatcherSettings(opts);
  const { pollInterval } = settings;
  const crunchRunCommand = opts.string('crunch-run-command') ?? 'crunch-run';
  const crunchRunArgs = opts.list('crunch-run-arg');
  const runtimeEngine = opts.string('runtime-engine');
  const vcpus = opts.integer('vcpus', undefined);
  const ram = opts.size('ram', undefined, 1);
  const reserveExtraRam = opts.size('reserve-extra-ram', undefined, 0);
  const stopGrace = opts.duration('stop-grace', DEFAULT_STOP_GRACE);
  const statusInterval = opts.duration('status-interval', 30_000);
  const out = new Output({ json: opts.flag('json') });

  let commandPath: string;
  try {
    commandPath = findExecutable(crunchRunCommand);
  } catch (err) {
    throw new CliError(`crunch-run command ${(err as Error).message} (set it with --crunch-run-command)`);
  }

  const client = apiClientFromEnv(out);

  let runner: LocalRunner;
  try {
    runner = new LocalRunner({
      crunchRunCommand,
      crunchRunArgs,
      runtimeEngine,
      reserveExtraRam,
      capacity: { vcpus, ram },
      stopGrace,
    });
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const d = new Dispatcher({
    client,
    runContainer: runner.runContainer,
    ...settings,
    handleSignals: false,
    // The runner returns once crunch-run has exited, which can take the whole escalation.
    shutdownTimeout: stopGrace + DEFAULT_KILL_GRACE + 30_000,
  });
  const session = localSession(runner);
  const reporter = new Reporter(out, d, session).watchLocal(runner);

  const cap = runner.pool.capacity;
  const gpus = cap.gpus.ids.length ? `${cap.gpus.ids.length} ${cap.gpus.stack} GPU(s) (${cap.gpus.ids.join(',')})` : 'no GPUs';
  out.event(
    'start',
    `arvados-dispatch local: ${cap.vcpus} vCPUs, ${formatBytes(cap.ram)} RAM, ${gpus}; crunch-run ${commandPath}; polling ${client.apiHost} every ${formatDuration(pollInterval)}`,
    { vcpus: cap.vcpus, ram: cap.ram, gpus: cap.gpus.ids, gpu_stack: cap.gpus.stack, crunch_run: commandPath, api_host: client.apiHost, poll_interval_ms: pollInterval, pid: process.pid },
  );
  await runSession({ out, dispatcher: d, runner: session, reporter, statusInterval });
  return ExitCode.OK;
}
