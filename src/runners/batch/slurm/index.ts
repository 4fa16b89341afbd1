/**
 * Slurm as one descriptor: everything `arvados-dispatch slurm` and the batch
 * core need to know about it (crunch-dispatch-slurm's behaviour).
 *
 * @module
 */
import { BATCH_RUNNER_DEFAULTS } from '../options.js';
import type { BatchSystemDescriptor } from '../descriptor.js';
import { DEFAULT_SBATCH_ARGUMENTS, DEFAULT_SBATCH_GPU_ARGUMENTS, SLURM_RUNNER_DEFAULTS, SLURM_TEMPLATE_RULES, SlurmAdapter, type SlurmAdapterOptions } from './adapter.js';

export * from './adapter.js';
export { classifySbatchStderr, classifySlurmFailure } from './errors.js';

/** Slurm: `sbatch`, `squeue`, `scancel`, `scontrol`, `sacct`. */
export const slurm: BatchSystemDescriptor<SlurmAdapterOptions> = {
  name: 'slurm',
  label: 'Slurm',
  summary: 'submit queued containers to Slurm as batch jobs',
  description:
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
    'Slurm with sbatch (job name = container UUID, --nice=10000 --no-requeue, then\n' +
    'the argument templates), as a batch script that execs\n' +
    '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
    'The API credentials reach the job through its secrets file. One squeue poller\n' +
    'follows the jobs and renices pending ones to follow Arvados priorities.\n' +
    'Priority 0 cancels a job (scancel; running jobs get SIGTERM). A job that\n' +
    'leaves the queue on its own: its container is cancelled if Running, unlocked\n' +
    'if Locked, with the reason from sacct (or scontrol show job): out of memory,\n' +
    'time limit, node failure... A job pending for a reason that can never clear\n' +
    'is cancelled with that reason after --pending-grace. Slurm commands share\n' +
    'one limiter (3 at once, --submit-rate). On stop, jobs are left in Slurm for\n' +
    'the next dispatcher. Bad templates or missing Slurm commands: exit 2.',
  commands: { submit: 'sbatch', queue: 'squeue' },
  templates: { rules: SLURM_TEMPLATE_RULES, args: DEFAULT_SBATCH_ARGUMENTS, gpuArgs: DEFAULT_SBATCH_GPU_ARGUMENTS },
  capabilities: { priority: 'nice', accounting: true, maxRunTime: 'container' },
  prioritySpread: { default: BATCH_RUNNER_DEFAULTS.prioritySpread, min: 0 },
  help: {
    rateCommands: 'sbatch, scancel, scontrol and sacct',
    pendingGrace:
      'how long a job may stay pending for a reason that can never clear (BadConstraints, PartitionConfig...) before its container is cancelled with that reason',
    noAccounting: 'do not ask sacct / scontrol show job why a job ended',
    hosts: 'compute nodes',
    hostKind: 'a Slurm submit host',
    args: 'sbatch argument template; giving any replaces the default list. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %P partitions, %G GPUs, %W max run time in minutes, %I instance type, %% a literal %',
    gpuArgs: 'templates added for containers that want GPUs',
    prioritySpread: 'nice gap between adjacent pending jobs',
  },
  options: {
    'squeue-all': { type: 'boolean', help: "run squeue --all (also jobs in hidden partitions, as Go's dispatcher does); still only this user's jobs" },
    'job-output-dir': {
      type: 'string',
      metavar: 'DIR',
      default: SLURM_RUNNER_DEFAULTS.jobOutputDir,
      help: 'absolute directory on the compute nodes for --chdir and the job output files; "none" adds neither',
    },
  },
  configKeys: [
    { key: 'Services.DispatchSLURM.InternalURLs', flag: 'listen', kind: 'internal-urls' },
    { key: 'Containers.SLURM.SbatchArgumentsList', flag: 'sbatch-arg', kind: 'list' },
    { key: 'Containers.SLURM.SbatchGPUArgumentsList', flag: 'sbatch-gpu-arg', kind: 'list' },
    { key: 'Containers.SLURM.SbatchEnvironmentVariables', flag: 'sbatch-env', kind: 'env' },
    { key: 'Containers.SLURM.PrioritySpread', flag: 'priority-spread', kind: 'integer' },
  ],
  knownUnusedKeys: { section: 'Containers.SLURM', keys: ['Managed'] },
  missingIsUsage: true,
  adapterOptions: (read) => {
    const dir = read.string('job-output-dir');
    return { squeueAll: read.flag('squeue-all'), jobOutputDir: dir === 'none' ? null : dir };
  },
  executables: () => ['sbatch', 'squeue', 'scancel', 'scontrol'],
  createAdapter: (options) => new SlurmAdapter(options),
};
