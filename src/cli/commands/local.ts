/**
 * `arvados-dispatch local`: runs the containers of the API's queue as
 * crunch-run processes on this machine (crunch-dispatch-local).
 *
 * @module
 */
import { describeError } from '../../util/errors.js';
import os from 'node:os';
import { Dispatcher } from '../../dispatcher/dispatcher.js';
import { DEFAULT_STOP_GRACE, DEFAULT_KILL_GRACE, LocalRunner } from '../../runners/local/local-runner.js';
import { formatBytes } from '../../runners/local/resources.js';
import { DISPATCHER_OPTIONS, DISPATCHING_FOOTER, OUTPUT_OPTIONS, formatHelp, parseCommandLine, type OptionTable } from '../args.js';
import { formatDuration } from '../duration.js';
import { ExitCode, UsageError } from '../errors.js';
import { Output } from '../output.js';
import { Reporter } from '../report.js';
import { runSession } from '../session.js';
import { apiClientFromEnv, checkReachable, dispatcherSettings } from '../dispatching.js';
import { localSession } from '../local-session.js';
import { managementSettings, startService } from '../service.js';
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
  env: { type: 'string', multiple: true, metavar: 'NAME=VALUE', help: "set a variable in crunch-run's environment" },
  'env-pass': { type: 'string', multiple: true, metavar: 'NAME', help: "pass this process's variable NAME on to crunch-run" },
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
      'AMD_VISIBLE_DEVICES). crunch-run gets only PATH, TMPDIR, the API\n' +
      'credentials and what --env / --env-pass add in its environment. Priority 0\n' +
      'or a stop sends it SIGINT, then\n' +
      'SIGTERM and SIGKILL if it does not exit.',
    OPTIONS,
    DISPATCHING_FOOTER,
  );
}

/** Variables crunch-run gets from the client; --env must not replace them. */
const RESERVED_ENV = new Set(['ARVADOS_API_HOST', 'ARVADOS_API_TOKEN', 'ARVADOS_API_HOST_INSECURE']);
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * crunch-run's extra environment from `--env NAME=VALUE` and `--env-pass
 * NAME`. The API credentials are the client's and cannot be replaced.
 *
 * @throws {@link UsageError} naming the bad entry.
 */
export function crunchRunEnvironment(entries: readonly string[], pass: readonly string[]): { env: Record<string, string>; envPass: string[] } {
  const env: Record<string, string> = {};
  const usage = (msg: string): UsageError => new UsageError(`${msg}; see 'arvados-dispatch local --help'`);
  for (const e of entries) {
    const eq = e.indexOf('=');
    const name = eq < 0 ? e : e.slice(0, eq);
    if (eq < 0 || !ENV_NAME.test(name)) throw usage(`--env: "${e.split('=')[0]}" is not NAME=VALUE`);
    if (RESERVED_ENV.has(name)) throw usage(`--env: ${name} is set from the dispatcher's own credentials`);
    env[name] = e.slice(eq + 1);
  }
  for (const name of pass) {
    if (!ENV_NAME.test(name)) throw usage(`--env-pass: "${name}" is not a variable name`);
    if (RESERVED_ENV.has(name)) throw usage(`--env-pass: ${name} is set from the dispatcher's own credentials`);
  }
  return { env, envPass: [...pass] };
}

/** Runs the command; resolves to the exit status. */
export async function run(argv: string[]): Promise<number> {
  const opts = parseCommandLine(argv, OPTIONS, 'local');
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
  const childEnv = crunchRunEnvironment(opts.list('env'), opts.list('env-pass'));
  const management = managementSettings(opts);
  const out = new Output({ json: opts.flag('json') });
  for (const note of opts.notes) out.warn(note);

  let commandPath: string;
  try {
    commandPath = findExecutable(crunchRunCommand);
  } catch (err) {
    // A startup check like any flag: exit 2 before anything is locked.
    throw new UsageError(`crunch-run command ${describeError(err)} (set it with --crunch-run-command)`);
  }

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
    throw new UsageError(describeError(err));
  }

  const client = apiClientFromEnv(out, opts);
  await checkReachable(client);
  const d = new Dispatcher({
    client,
    runContainer: runner.runContainer,
    ...settings,
    secondSignal: 'exit',
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
  const service = management ? await startService(management, out, d, pollInterval) : undefined;
  try {
    await runSession({ out, dispatcher: d, runner: session, reporter, statusInterval });
  } finally {
    await service?.close();
  }
  return ExitCode.OK;
}
