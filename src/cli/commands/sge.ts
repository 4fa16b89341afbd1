/**
 * `arvados-dispatch sge`: submits the containers of the API's queue to Grid
 * Engine (Son of Grid Engine, Univa/Altair Grid Engine) as batch jobs.
 *
 * @module
 */
import { DEFAULT_QSUB_ARGUMENTS, DEFAULT_QSUB_GPU_ARGUMENTS, SgeRunner } from '../../runners/batch/sge/adapter.js';
import { BATCH_RUNNER_DEFAULTS } from '../../runners/batch/options.js';
import { batchHelp, runBatchCommand, type BatchSystem } from '../batch-command.js';

/** One line for the overall help. */
export const summary = 'submit queued containers to Grid Engine as batch jobs';

const SGE: BatchSystem = {
  command: 'sge',
  label: 'Grid Engine',
  submit: 'qsub',
  queue: 'qstat',
  defaults: BATCH_RUNNER_DEFAULTS,
  description:
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
    'Grid Engine with qsub -terse -N <container-uuid> -S /bin/sh -r n -V, then the\n' +
    'argument templates, as a batch script on stdin that execs\n' +
    '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
    'The API credentials reach the job through its environment (-V). One qstat\n' +
    'poller follows our jobs and keeps pending ones in Arvados order (qalter -p;\n' +
    'without operator rights it only ever lowers priorities). Priority 0 deletes a\n' +
    "job (qdel, until it is gone; set the queue's terminate_method to SIGTERM so\n" +
    'that crunch-run can stop its container). A job that leaves the queue on its\n' +
    'own: its container is cancelled if Running, unlocked if Locked, with the\n' +
    'reason from qacct (h_vmem, h_rt, deleted...). A job in the error state (Eqw)\n' +
    'is cancelled with that reason after --pending-grace. On stop, jobs are left\n' +
    'in Grid Engine for the next dispatcher. Bad templates: exit 2; Grid Engine\n' +
    'commands missing on this host: exit 1.',
  help: {
    rateCommands: 'qsub, qdel, qalter and qacct',
    pendingGrace: 'how long a job may stay in the error state (Eqw) before its container is cancelled with that reason',
    noAccounting: 'do not ask qacct why a job ended',
    hosts: 'execution hosts',
    args: 'qsub argument template; giving any replaces the default list. Resources are site-specific, e.g. --qsub-arg=-l --qsub-arg=h_vmem=%MM --qsub-arg=-pe --qsub-arg=smp --qsub-arg=%C. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %G GPUs, %P partitions (as a queue list), %W max run time in minutes (an option whose %P or %W is empty is left out with its value), %% a literal %',
    defaultArgs: DEFAULT_QSUB_ARGUMENTS,
    gpuArgs: 'templates added for containers that want GPUs (none by default), e.g. -l gpu=%G',
    defaultGpuArgs: DEFAULT_QSUB_GPU_ARGUMENTS,
    prioritySpread: 'qalter -p gap between adjacent pending jobs',
    prioritySpreadDefault: BATCH_RUNNER_DEFAULTS.prioritySpread,
  },
  minPrioritySpread: 0,
  options: {},
  executables: (opts) => ['qsub', 'qstat', 'qdel', 'qalter', ...(opts.flag('no-accounting') ? [] : ['qacct'])],
  missingIsUsage: false,
  hostKind: 'a Grid Engine submit host',
  createRunner: (common, t) => new SgeRunner({ ...common, qsubArgs: t.args, qsubGpuArgs: t.gpuArgs }),
};

/** The `--help` text. */
export function help(): string {
  return batchHelp(SGE);
}

/** Runs the command; resolves to the exit status. */
export function run(argv: string[]): Promise<number> {
  return runBatchCommand(SGE, argv);
}
