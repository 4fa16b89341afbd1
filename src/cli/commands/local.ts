/**
 * `arvados-dispatch local`: runs the containers of the API's queue as
 * crunch-run processes on this machine (crunch-dispatch-local).
 *
 * @module
 */
import { clusterSections } from '../cluster-sections.js';
import { describeError } from '../../util/errors.js';
import os from 'node:os';
import { DEFAULT_STOP_GRACE, DEFAULT_KILL_GRACE, LocalRunner } from '../../runners/local/local-runner.js';
import { checkEnvOptions } from '../../runners/crunch-run.js';
import { formatBytes } from '../../runners/local/resources.js';
import { DISPATCHER_OPTIONS, DISPATCHING_FOOTER, OUTPUT_OPTIONS, formatHelp, type OptionTable } from '../args.js';
import { formatDuration } from '../duration.js';
import { ExitCode, UsageError } from '../errors.js';
import { Reporter } from '../report.js';
import { beginCommand, commandOutput, serveDispatcher } from '../dispatch-command.js';
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
    help: 'argument for crunch-run, before --runtime-engine and the container UUID; write --crunch-run-arg=-x for one that starts with "-"',
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
  'state-dir': {
    type: 'string',
    metavar: 'DIR',
    default: '$XDG_RUNTIME_DIR/arvados-dispatch/local, else ~/.cache/arvados-dispatch/local',
    help: 'private directory (0700) of pid and output files, so that a restart follows crunch-run processes that survived',
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
      '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
      "within this machine's vCPUs, RAM and GPUs (CUDA_VISIBLE_DEVICES or\n" +
      'AMD_VISIBLE_DEVICES). crunch-run gets only PATH, TMPDIR, the API\n' +
      'credentials and what --env / --env-pass add in its environment. Priority 0\n' +
      'or a stop sends it SIGINT, then\n' +
      'SIGTERM and SIGKILL if it does not exit.',
    OPTIONS,
    DISPATCHING_FOOTER,
  );
}

/**
 * crunch-run's extra environment from `--env NAME=VALUE` and `--env-pass
 * NAME`, checked by the runner's own rules (names, and the variables it
 * sets itself, such as the API credentials, cannot be given).
 *
 * @throws {@link UsageError} naming the flag and the bad entry.
 */
export function crunchRunEnvironment(entries: readonly string[], pass: readonly string[]): { env: Record<string, string>; envPass: string[] } {
  const env: Record<string, string> = {};
  const usage = (msg: string): UsageError => new UsageError(`${msg}; see 'arvados-dispatch local --help'`);
  for (const e of entries) {
    const eq = e.indexOf('=');
    if (eq <= 0) throw usage(`--env: "${e}" is not NAME=VALUE`);
    env[e.slice(0, eq)] = e.slice(eq + 1);
  }
  try {
    checkEnvOptions(env, pass);
  } catch (err) {
    throw usage(describeError(err).replace(/^env:/, '--env:').replace(/^envPass:/, '--env-pass:'));
  }
  return { env, envPass: [...pass] };
}

/** The `--state-dir` option, checked. */
function stateDir(dir: string | undefined): { stateDir?: string } {
  if (dir === undefined) return {};
  if (!dir.startsWith('/')) throw new UsageError(`--state-dir: "${dir}" is not an absolute path`);
  return { stateDir: dir };
}

/** Runs the command; resolves to the exit status. */
export async function run(argv: string[]): Promise<number> {
  const start = beginCommand(argv, OPTIONS, 'local', help);
  if (!start) return ExitCode.OK;
  const { opts, settings } = start;
  const crunchRunCommand = opts.string('crunch-run-command') ?? 'crunch-run';
  const stopGrace = opts.duration('stop-grace', DEFAULT_STOP_GRACE);
  const childEnv = crunchRunEnvironment(opts.list('env'), opts.list('env-pass'));
  // GatewayAuthSecret is keyed by the cluster's SystemRootToken, as the controller computes it.
  const { systemRootToken } = start.credentials;
  const sections = clusterSections(opts.config);
  const options = {
    crunchRunCommand,
    crunchRunArgs: opts.list('crunch-run-arg'),
    runtimeEngine: opts.string('runtime-engine'),
    reserveExtraRam: opts.size('reserve-extra-ram', undefined, 0),
    capacity: { vcpus: opts.integer('vcpus', undefined), ram: opts.size('ram', undefined, 1) },
    instanceTypes: sections.instanceTypes,
    instanceTypeRules: sections.instanceTypeRules,
    stopGrace,
    ...stateDir(opts.string('state-dir')),
    ...childEnv,
    ...(systemRootToken ? { systemRootToken } : {}),
  };
  const out = commandOutput(opts, systemRootToken ? [systemRootToken] : []);

  let commandPath: string;
  try {
    commandPath = findExecutable(crunchRunCommand);
  } catch (err) {
    // A startup check like any flag: exit 2 before anything is locked.
    throw new UsageError(`crunch-run command ${describeError(err)} (set it with --crunch-run-command)`);
  }

  let runner: LocalRunner;
  try {
    runner = new LocalRunner(options);
  } catch (err) {
    throw new UsageError(describeError(err));
  }

  return serveDispatcher(start, out, {
    runner,
    // The runner returns once crunch-run has exited, which can take the whole escalation.
    shutdownTimeout: stopGrace + DEFAULT_KILL_GRACE + 30_000,
    present: (d, client) => {
      const session = localSession(runner);
      const cap = runner.pool.capacity;
      const gpus = cap.gpus.ids.length ? `${cap.gpus.ids.length} ${cap.gpus.stack} GPU(s) (${cap.gpus.ids.join(',')})` : 'no GPUs';
      const { pollInterval } = settings;
      return {
        session,
        reporter: new Reporter(out, d).watch(runner),
        start: {
          text: `arvados-dispatch local: ${cap.vcpus} vCPUs, ${formatBytes(cap.ram)} RAM, ${gpus}; crunch-run ${commandPath}; polling ${client.apiHost} every ${formatDuration(pollInterval)}`,
          fields: { vcpus: cap.vcpus, ram: cap.ram, gpus: cap.gpus.ids, gpu_stack: cap.gpus.stack, crunch_run: commandPath, api_host: client.apiHost, poll_interval_ms: pollInterval, pid: process.pid },
        },
      };
    },
  });
}
