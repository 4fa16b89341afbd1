/**
 * Grid Engine (Son of Grid Engine, Univa/Altair GE) as one descriptor:
 * everything `arvados-dispatch sge` and the batch core need to know about it.
 *
 * @module
 */
import { BATCH_RUNNER_DEFAULTS } from '../options.js';
import type { BatchSystemDescriptor } from '../descriptor.js';
import { DEFAULT_QSUB_ARGUMENTS, DEFAULT_QSUB_GPU_ARGUMENTS, SGE_TEMPLATE_RULES, SgeAdapter, type SgeAdapterOptions } from './adapter.js';
import { containerOfJob, sgeJobName } from './name.js';

export * from './adapter.js';
export { classifySge, parseQsubJobId } from './output.js';
export { parseQacct, sgeEnd, type SgeAccounting, type SgeEnd, type SgeEndKind } from './qacct.js';
export { QstatParseError, parseQstatXml, type SgeJob } from './qstat.js';
export { containerOfJob, sgeJobName } from './name.js';

/** Grid Engine: `qsub`, `qstat`, `qdel`, `qalter`, `qacct`. */
export const sge: BatchSystemDescriptor<SgeAdapterOptions> = {
  name: 'sge',
  label: 'Grid Engine',
  summary: 'submit queued containers to Grid Engine as batch jobs',
  description:
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
    'Grid Engine with qsub -terse -N <container-uuid> -S /bin/sh -r n, then the\n' +
    'argument templates, as a batch script on stdin that execs\n' +
    '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
    'The API credentials reach the job through its secrets file. One qstat\n' +
    'poller follows our jobs and keeps pending ones in Arvados order (qalter -p;\n' +
    'without operator rights it only ever lowers priorities). Priority 0 deletes a\n' +
    "job (qdel, until it is gone; set the queue's terminate_method to SIGTERM so\n" +
    'that crunch-run can stop its container). A job that leaves the queue on its\n' +
    'own: its container is cancelled if Running, unlocked if Locked, with the\n' +
    'reason from qacct (h_vmem, h_rt, deleted...). A job in the error state (Eqw)\n' +
    'is cancelled with that reason after --pending-grace. On stop, jobs are left\n' +
    'in Grid Engine for the next dispatcher. Bad templates: exit 2; Grid Engine\n' +
    'commands missing on this host: exit 1.',
  commands: { submit: 'qsub', queue: 'qstat' },
  templates: { rules: SGE_TEMPLATE_RULES, args: DEFAULT_QSUB_ARGUMENTS, gpuArgs: DEFAULT_QSUB_GPU_ARGUMENTS },
  // Job names may not start with a digit; cluster ids may.
  capabilities: { priority: 'range', accounting: true, maxRunTime: 'container', jobName: { toJob: sgeJobName, toContainer: containerOfJob } },
  prioritySpread: { default: BATCH_RUNNER_DEFAULTS.prioritySpread, min: 0 },
  help: {
    rateCommands: 'qsub, qdel, qalter and qacct',
    pendingGrace: 'how long a job may stay in the error state (Eqw) before its container is cancelled with that reason',
    noAccounting: 'do not ask qacct why a job ended',
    hosts: 'execution hosts',
    hostKind: 'a Grid Engine submit host',
    args: 'qsub argument template; giving any replaces the default list. Resources are site-specific, e.g. --qsub-arg=-l --qsub-arg=h_vmem=%MM --qsub-arg=-pe --qsub-arg=smp --qsub-arg=%C. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %G GPUs, %P partitions (as a queue list), %W max run time in minutes (an option whose %P or %W is empty is left out with its value), %% a literal %',
    gpuArgs: 'templates added for containers that want GPUs (none by default), e.g. -l gpu=%G',
    prioritySpread: 'qalter -p gap between adjacent pending jobs',
  },
  options: {},
  configKeys: [],
  missingIsUsage: false,
  adapterOptions: () => ({}),
  executables: (_o, accounting) => ['qsub', 'qstat', 'qdel', 'qalter', ...(accounting ? ['qacct'] : [])],
  createAdapter: (options) => new SgeAdapter(options),
};
