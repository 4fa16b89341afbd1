/**
 * `arvados-dispatch slurm`: submits the containers of the API's queue to
 * Slurm as batch jobs (crunch-dispatch-slurm).
 *
 * @module
 */
import { DEFAULT_SBATCH_ARGUMENTS, DEFAULT_SBATCH_GPU_ARGUMENTS, SLURM_RUNNER_DEFAULTS, SlurmRunner } from '../../runners/batch/slurm/adapter.js';
import { batchHelp, runBatchCommand, type BatchSystem } from '../batch-command.js';

/** One line for the overall help. */
export const summary = 'submit queued containers to Slurm as batch jobs';

const D = SLURM_RUNNER_DEFAULTS;

const SLURM: BatchSystem = {
  command: 'slurm',
  label: 'Slurm',
  submit: 'sbatch',
  queue: 'squeue',
  defaults: D,
  description:
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
    'Slurm with sbatch (job name = container UUID, --nice=10000 --no-requeue, then\n' +
    'the argument templates), as a batch script that execs\n' +
    '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
    'The API credentials reach the job through its environment. One squeue poller\n' +
    'follows the jobs and renices pending ones to follow Arvados priorities.\n' +
    'Priority 0 cancels a job (scancel; running jobs get SIGTERM). A job that\n' +
    'leaves the queue on its own: its container is cancelled if Running, unlocked\n' +
    'if Locked, with the reason from sacct (or scontrol show job): out of memory,\n' +
    'time limit, node failure... A job pending for a reason that can never clear\n' +
    'is cancelled with that reason after --pending-grace. Slurm commands share\n' +
    'one limiter (3 at once, --submit-rate). On stop, jobs are left in Slurm for\n' +
    'the next dispatcher. Bad templates or missing Slurm commands: exit 2.',
  help: {
    rateCommands: 'sbatch, scancel, scontrol and sacct',
    pendingGrace:
      'how long a job may stay pending for a reason that can never clear (BadConstraints, PartitionConfig...) before its container is cancelled with that reason',
    noAccounting: 'do not ask sacct / scontrol show job why a job ended',
    hosts: 'compute nodes',
    args: 'sbatch argument template; giving any replaces the default list. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %P partitions, %G GPUs, %W max run time in minutes, %I instance type, %% a literal %',
    defaultArgs: DEFAULT_SBATCH_ARGUMENTS,
    gpuArgs: 'templates added for containers that want GPUs',
    defaultGpuArgs: DEFAULT_SBATCH_GPU_ARGUMENTS,
    prioritySpread: 'nice gap between adjacent pending jobs',
    prioritySpreadDefault: D.prioritySpread,
  },
  minPrioritySpread: 0,
  options: {
    'squeue-all': { type: 'boolean', help: "run squeue --all (also jobs in hidden partitions, as Go's dispatcher does); still only this user's jobs" },
    'job-output-dir': {
      type: 'string',
      metavar: 'DIR',
      default: D.jobOutputDir ?? '',
      help: 'absolute directory on the compute nodes for --chdir and the job output files; "none" adds neither',
    },
  },
  executables: () => ['sbatch', 'squeue', 'scancel', 'scontrol'],
  missingIsUsage: true,
  hostKind: 'a Slurm submit host',
  createRunner: (common, t, opts) => {
    const outputDir = opts.string('job-output-dir');
    return new SlurmRunner({
      ...common,
      sbatchArgs: t.args,
      sbatchGpuArgs: t.gpuArgs,
      squeueAll: opts.flag('squeue-all'),
      jobOutputDir: outputDir === 'none' ? null : outputDir,
    });
  },
};

/** The `--help` text. */
export function help(): string {
  return batchHelp(SLURM);
}

/** Runs the command; resolves to the exit status. */
export function run(argv: string[]): Promise<number> {
  return runBatchCommand(SLURM, argv);
}
