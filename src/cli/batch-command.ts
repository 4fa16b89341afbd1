/**
 * The batch commands (`slurm`, `lsf`, `sge`, `pbs`...): one generic command
 * for every batch system, reading what differs (command names, help texts,
 * its own flags, the adapter) from the system's descriptor.
 *
 * @module
 */
import { createBatchRunner, type BatchSystemDescriptor, type SystemOptionReader } from '../runners/batch/descriptor.js';
import type { BatchRunner } from '../runners/batch/runner.js';
import { BATCH_RUNNER_DEFAULTS, type BatchRunnerOptions } from '../runners/batch/options.js';
import { describeError } from '../util/errors.js';
import { DISPATCHER_OPTIONS, DISPATCHING_FOOTER, OUTPUT_OPTIONS, formatHelp, type OptionTable, type Options } from './args.js';
import { clusterSections } from './cluster-sections.js';
import { beginCommand, commandOutput, serveDispatcher } from './dispatch-command.js';
import { formatDuration } from './duration.js';
import { configKeysFor } from './config.js';
import { CliError, ExitCode, UsageError } from './errors.js';
import type { CliIO, CommandModule } from './run.js';
import { Reporter } from './report.js';
import { findExecutable } from './which.js';

/** The runner options every batch command sets from its common flags. */
export type CommonBatchOptions = Omit<BatchRunnerOptions, 'args' | 'gpuArgs'>;

/** What a batch command reads: a system's descriptor (see `runners/batch/registry.ts`). */
export type BatchSystem = BatchSystemDescriptor;

/**
 * A batch command's parsed flags as a descriptor reads them (each flag
 * falling back to its config key).
 */
export function systemOptionReader(opts: Options): SystemOptionReader {
  return {
    flag: (name) => opts.flag(name),
    string: (name) => opts.string(name),
    rawString: (name) => {
      const given = opts.givenString(name);
      if (given !== undefined) return given;
      const v = opts.configValue(name)?.value;
      if (typeof v === 'string') return v;
      // A key the file names with an empty value: '' (e.g. BsubSudoUser: "" turns sudo off).
      const key = configKeysFor(opts.command).find((k) => k.flag === name)?.key;
      return key !== undefined && opts.config?.present?.has(key) ? '' : undefined;
    },
    integer: (name, dflt, min) => opts.integer(name, dflt, min),
    duration: (name, dflt, min) => opts.duration(name, dflt, min),
  };
}

/** The flag table of a batch command. */
export function batchOptions(sys: BatchSystem): OptionTable {
  const D = BATCH_RUNNER_DEFAULTS;
  const { queue, submit } = sys.commands;
  const { label, help: h } = sys;
  const options: OptionTable = {};
  for (const [name, o] of Object.entries(sys.options)) options[name] = { ...o };
  return {
    ...DISPATCHER_OPTIONS,
    [`${queue}-interval`]: { type: 'string', metavar: 'DURATION', default: 'the poll interval', help: `time between ${queue} runs while there is work` },
    [`${queue}-interval-max`]: {
      type: 'string',
      metavar: 'DURATION',
      default: `6 x the ${queue} interval, at most 1m`,
      help: `longest time between ${queue} runs: the interval doubles while the queue does not change, and drops back when it does`,
    },
    'submit-rate': {
      type: 'string',
      metavar: 'N/PERIOD',
      default: `${D.submitRate.count}/${formatDuration(D.submitRate.periodMs)}`,
      help: `most ${h.rateCommands} commands per period (token bucket), e.g. 20/1s or 100/1m`,
    },
    'pending-grace': { type: 'string', metavar: 'DURATION', default: formatDuration(D.neverClearsGrace), help: h.pendingGrace },
    'no-accounting': { type: 'boolean', help: h.noAccounting },
    'crunch-run-command': { type: 'string', metavar: 'CMD', default: D.crunchRunCommand, help: `crunch-run on the ${h.hosts} (not checked on this host)` },
    'crunch-run-arg': {
      type: 'string',
      multiple: true,
      metavar: 'ARG',
      help: 'argument for crunch-run, before --runtime-engine and the container UUID; write --crunch-run-arg=-x for one that starts with "-"',
    },
    'runtime-engine': { type: 'string', metavar: 'ENGINE', help: 'pass --runtime-engine=ENGINE to crunch-run (docker, singularity)' },
    [`${submit}-arg`]: { type: 'string', multiple: true, metavar: 'ARG', default: sys.templates.args.join(' '), help: h.args },
    [`${submit}-gpu-arg`]: {
      type: 'string',
      multiple: true,
      metavar: 'ARG',
      ...(sys.templates.gpuArgs.length ? { default: sys.templates.gpuArgs.join(' ') } : {}),
      help: h.gpuArgs,
    },
    ...options,
    [`${submit}-env`]: { type: 'string', multiple: true, metavar: 'NAME=VALUE', help: `extra environment for ${submit} and so for the job (not for secrets)` },
    'job-secrets-dir': {
      type: 'string',
      metavar: 'DIR',
      default: '~/.cache/arvados-dispatch/job-secrets',
      help: `where each job's 0600 file with the API token goes (mode 0700; must be at the same path on the ${h.hosts})`,
    },
    'reserve-extra-ram': { type: 'string', metavar: 'SIZE', default: '550MiB', help: 'RAM added to each request for crunch-run itself' },
    'priority-spread': { type: 'string', metavar: 'N', default: String(sys.prioritySpread.default), help: h.prioritySpread },
    'vanish-grace-misses': {
      type: 'string',
      metavar: 'N',
      default: String(D.vanishGrace.misses),
      help: `successful ${queue} runs a job must be missing from before its container counts as lost`,
    },
    'vanish-grace': { type: 'string', metavar: 'DURATION', default: '0s', help: 'and the least time it must be missing' },
    'submit-retry-max': {
      type: 'string',
      metavar: 'DURATION',
      default: formatDuration(D.submitRetry.maxDelay),
      help: `longest wait between ${submit} retries, and between probes while ${label} refuses submissions for a limit`,
    },
    'command-timeout': { type: 'string', metavar: 'DURATION', default: formatDuration(D.commandTimeout), help: `kill any ${label} command that takes longer` },
    ...OUTPUT_OPTIONS,
  };
}

/** The `--help` text of a batch command. */
export function batchHelp(sys: BatchSystem): string {
  return formatHelp(`arvados-dispatch ${sys.name} [options]`, sys.description, batchOptions(sys), DISPATCHING_FOOTER);
}

/** `NAME=VALUE` entries of `--<submit>-env` as an environment. */
function environment(sys: BatchSystem, entries: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of entries) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(e);
    if (!m) throw new UsageError(`--${sys.commands.submit}-env: "${e}" is not NAME=VALUE; see 'arvados-dispatch ${sys.name} --help'`);
    env[m[1]] = m[2];
  }
  return env;
}

/** The runner options of the common flags. @throws UsageError for a bad flag. */
function commonOptions(sys: BatchSystem, opts: Options, pollInterval: number): CommonBatchOptions {
  const D = BATCH_RUNNER_DEFAULTS;
  const { queue, submit } = sys.commands;
  const queueInterval = opts.duration(`${queue}-interval`, pollInterval, 1);
  const sections = clusterSections(opts.config);
  return {
    instanceTypes: sections.instanceTypes,
    instanceTypeRules: sections.instanceTypeRules,
    crunchRunCommand: opts.string('crunch-run-command'),
    crunchRunArgs: opts.list('crunch-run-arg'),
    runtimeEngine: opts.string('runtime-engine'),
    environment: environment(sys, opts.list(`${submit}-env`)),
    reserveExtraRam: opts.size('reserve-extra-ram', undefined, 0),
    prioritySpread: opts.integer('priority-spread', sys.prioritySpread.default, sys.prioritySpread.min),
    queueInterval,
    queueIntervalMax: opts.duration(`${queue}-interval-max`, Math.max(queueInterval, Math.min(6 * queueInterval, 60_000)), queueInterval),
    submitRate: opts.rate('submit-rate'),
    neverClearsGrace: opts.duration('pending-grace', D.neverClearsGrace),
    accounting: !opts.flag('no-accounting'),
    vanishGrace: { misses: opts.integer('vanish-grace-misses', undefined, 1), ms: opts.duration('vanish-grace', 0) },
    submitRetry: { maxDelay: opts.duration('submit-retry-max', D.submitRetry.maxDelay, D.submitRetry.initialDelay) },
    commandTimeout: opts.duration('command-timeout', D.commandTimeout, 1),
    ...secretOptions(opts),
  };
}

/** Where job secrets go (the SystemRootToken comes from the resolved credentials). */
function secretOptions(opts: Options): Pick<CommonBatchOptions, 'secretsDir'> {
  const dir = opts.string('job-secrets-dir');
  if (dir !== undefined && !dir.startsWith('/')) throw new UsageError(`--job-secrets-dir: "${dir}" is not an absolute path`);
  return dir ? { secretsDir: dir } : {};
}

/** Fails fast, before any lock, when this host cannot submit to the system. */
function checkExecutables(sys: BatchSystem, adapterOptions: object, accounting: boolean): void {
  for (const cmd of sys.executables(adapterOptions, accounting)) {
    try {
      findExecutable(cmd);
    } catch (err) {
      const message = `${sys.label} command ${describeError(err)}: is this ${sys.help.hostKind}?`;
      throw sys.missingIsUsage ? new UsageError(message) : new CliError(message);
    }
  }
}

/** The runner of a batch command from its flags. @throws UsageError, before any lock, for a bad flag or template. */
function batchRunner(sys: BatchSystem, opts: Options, common: CommonBatchOptions, adapterOptions: object): BatchRunner {
  const args = opts.list(`${sys.commands.submit}-arg`);
  const gpuArgs = opts.list(`${sys.commands.submit}-gpu-arg`);
  try {
    return createBatchRunner(sys, { ...common, ...(args.length ? { args } : {}), ...(gpuArgs.length ? { gpuArgs } : {}) }, adapterOptions);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // A bad template or option: one line, exit 2, before any lock.
    throw new UsageError(`${describeError(err)}; see 'arvados-dispatch ${sys.name} --help'`);
  }
}

/** Runs a batch command; resolves to the exit status. */
export async function runBatchCommand(sys: BatchSystem, argv: string[], io?: CliIO): Promise<number> {
  const start = beginCommand(argv, batchOptions(sys), sys.name, () => batchHelp(sys), io);
  if (!start) return ExitCode.OK;
  const { opts, settings } = start;
  const { systemRootToken } = start.credentials;
  const common = { ...commonOptions(sys, opts, settings.pollInterval), ...(systemRootToken ? { systemRootToken } : {}) };
  const out = commandOutput(opts, systemRootToken ? [systemRootToken] : []);
  const adapterOptions = sys.adapterOptions(systemOptionReader(opts));
  checkExecutables(sys, adapterOptions, common.accounting !== false);
  const runner = batchRunner(sys, opts, common, adapterOptions);
  const { submit, queue } = sys.commands;
  const { label } = sys;
  if (runner.options.instanceTypes.length === 0 && [...runner.options.args, ...runner.options.gpuArgs].some((a) => /(?:^|[^%])(?:%%)*%I/.test(a))) {
    out.warn(`a --${submit}-arg template uses %I, but the cluster config has no InstanceTypes: %I expands to "" (as in Arvados)`);
  }

  return serveDispatcher(start, out, {
    runner,
    // On stop the runner returns without touching the batch system; only running submissions are waited for.
    shutdownTimeout: runner.options.commandTimeout + 5_000,
    present: (d, client) => {
      const o = runner.options;
      const extras = sys.startExtras?.(adapterOptions) ?? { prefix: '', fields: {} };
      const { pollInterval } = settings;
      const { queueInterval } = o;
      return {
        reporter: new Reporter(out, d).watch(runner),
        session: {
          stopNotice: () => `leaving ${runner.status.inQueue} ${label} job(s) in the queue for the next dispatcher`,
          leftBehind: () => `${runner.status.containers} container(s) being followed`,
        },
        start: {
          text: `arvados-dispatch ${sys.name}: crunch-run ${o.crunchRunCommand}; ${extras.prefix}${submit} ${o.args.join(' ')}; polling ${client.apiHost} every ${formatDuration(pollInterval)}, ${queue} every ${formatDuration(queueInterval)}`,
          fields: {
            crunch_run: o.crunchRunCommand,
            [`${submit}_args`]: o.args,
            ...extras.fields,
            submit_rate: `${o.submitRate.count}/${formatDuration(o.submitRate.periodMs)}`,
            api_host: client.apiHost,
            poll_interval_ms: pollInterval,
            [`${queue}_interval_ms`]: queueInterval,
            pid: process.pid,
          },
        },
      };
    },
  });
}

/** The CLI command of a batch system: help and run from its descriptor. */
export function batchCommand(sys: BatchSystem): CommandModule {
  return { summary: sys.summary, help: () => batchHelp(sys), run: (argv, io) => runBatchCommand(sys, argv, io) };
}
