/**
 * OpenPBS / PBS Professional as one descriptor: everything `arvados-dispatch
 * pbs` and the batch core need to know about it. Output formats are those
 * of OpenPBS 23.06.
 *
 * @module
 */
import { BATCH_RUNNER_DEFAULTS, type BatchRunnerOptions } from '../options.js';
import type { BatchSystemDescriptor } from '../descriptor.js';
import { BatchRunner } from '../runner.js';
import { DEFAULT_PBS_QSUB_ARGUMENTS, DEFAULT_PBS_QSUB_GPU_ARGUMENTS, PBS_TEMPLATE_RULES, PbsAdapter, type PbsAdapterOptions } from './adapter.js';

export * from './adapter.js';
export { QstatJsonParseError, parseQstatJson, pbsEnd, type PbsJob } from './qstat.js';
export { classifyPbs, parseQsubJobId as parsePbsJobId } from './output.js';

/** PBS: `qsub`, `qstat`, `qdel`, `qalter`. */
export const pbs: BatchSystemDescriptor<PbsAdapterOptions> = {
  name: 'pbs',
  label: 'PBS',
  summary: 'submit queued containers to OpenPBS / PBS Professional as batch jobs',
  description:
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
    'PBS with qsub -N <container-uuid> -r n, then the argument templates, as a\n' +
    'batch script on stdin that execs\n' +
    '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
    'The API credentials reach the job through its secrets file (no -V: qstat -f\n' +
    'shows a job\'s exported environment to every user). One qstat -f -F json\n' +
    'poller follows the jobs and keeps pending ones in Arvados order (qalter -p,\n' +
    '-1024..1023). Priority 0 deletes a job (qdel: SIGTERM, then SIGKILL after the\n' +
    "queue's kill_delay). A job that leaves the queue on its own: its container is\n" +
    'cancelled if Running, unlocked if Locked, with the reason from the job\n' +
    'history (qstat -x: Exit_status, e.g. memory or walltime exceeded). A job the\n' +
    'scheduler says "Can Never Run" is cancelled with that reason after\n' +
    '--pending-grace. On stop, jobs are left in PBS for the next dispatcher.\n' +
    'Bad templates: exit 2; PBS commands missing on this host: exit 1.',
  commands: { submit: 'qsub', queue: 'qstat' },
  templates: { rules: PBS_TEMPLATE_RULES, args: DEFAULT_PBS_QSUB_ARGUMENTS, gpuArgs: DEFAULT_PBS_QSUB_GPU_ARGUMENTS },
  capabilities: { priority: 'range', accounting: true, maxRunTime: 'container' },
  prioritySpread: { default: BATCH_RUNNER_DEFAULTS.prioritySpread, min: 1 },
  help: {
    rateCommands: 'qsub, qdel, qalter and qstat -x',
    pendingGrace: 'how long a job may stay pending with a "Can Never Run" comment before its container is cancelled with that reason',
    noAccounting: 'do not ask qstat -x (job history) why a job ended',
    hosts: 'execution hosts',
    hostKind: 'a PBS submission host',
    args: 'qsub argument template; giving any replaces the default list. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %G GPUs, %P partitions (as the queue), %W max run time in minutes, %I instance type (an option whose %P or %W is empty is left out with its value), %% a literal %',
    gpuArgs: 'templates added for containers that want GPUs (none by default; GPUs go in the chunk, e.g. select=1:ncpus=%C:mem=%Mmb:ngpus=%G)',
    prioritySpread: 'qalter -p gap between adjacent pending jobs',
  },
  options: {
    'no-reprioritise': { type: 'boolean', help: 'leave the priorities of pending jobs alone (no qalter -p)' },
  },
  configKeys: [],
  missingIsUsage: false,
  adapterOptions: (read) => ({ reprioritise: !read.flag('no-reprioritise') }),
  executables: (o) => ['qsub', 'qstat', 'qdel', ...(o.reprioritise === false ? [] : ['qalter'])],
  createAdapter: (options) => new PbsAdapter(options),
};

/** Options of {@link PbsRunner}: the core's, plus PBS's. */
export interface PbsRunnerOptions extends Omit<BatchRunnerOptions, 'args' | 'gpuArgs'>, PbsAdapterOptions {
  /** qsub argument templates; default {@link DEFAULT_PBS_QSUB_ARGUMENTS}. */
  qsubArgs?: readonly string[];
  /** Templates added for containers that want GPUs; default none. */
  qsubGpuArgs?: readonly string[];
}

/**
 * Runs containers as PBS jobs: the batch core with the {@link PbsAdapter}.
 * See `BatchRunner` for the behaviour.
 *
 * @example
 * ```ts
 * const runner = new PbsRunner({ qsubArgs: ['-q', 'workq', '-l', 'select=1:ncpus=%C:mem=%Mmb'] });
 * const dispatcher = new Dispatcher({ runner, pollInterval: 10_000 });
 * await dispatcher.run();
 * ```
 */
export class PbsRunner extends BatchRunner {
  /** @throws TypeError or RangeError for a bad option; `TemplateError` for a bad template. */
  constructor(options: PbsRunnerOptions = {}) {
    const { commands, reprioritise, qsubArgs, qsubGpuArgs, ...core } = options;
    super(new PbsAdapter({ commands, reprioritise }), { ...core, args: qsubArgs, gpuArgs: qsubGpuArgs }, pbs.templates);
  }
}
