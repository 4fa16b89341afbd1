/**
 * `arvados-dispatch lsf`: submits the containers of the API's queue to IBM
 * Spectrum LSF as batch jobs (Arvados' `arvados-dispatch-lsf`).
 *
 * @module
 */
import { DEFAULT_MAX_USER_PRIORITY, LsfRunner } from '../../runners/batch/lsf/adapter.js';
import { DEFAULT_BSUB_ARGUMENTS, DEFAULT_BSUB_GPU_ARGUMENTS, DEFAULT_MAX_RUN_TIME_OVERHEAD } from '../../runners/batch/lsf/template.js';
import { BATCH_RUNNER_DEFAULTS } from '../../runners/batch/options.js';
import { batchHelp, runBatchCommand, type BatchSystem } from '../batch-command.js';
import { formatDuration } from '../duration.js';
import type { Options } from '../args.js';
import { clusterSections } from '../cluster-sections.js';

/** Arvados' default `Containers.LSF.BsubSudoUser`. */
export const DEFAULT_BSUB_SUDO_USER = 'crunch';

/** One line for the overall help. */
export const summary = 'submit queued containers to LSF as batch jobs';

const maxUserPriority = (opts: Options): number => opts.integer('max-user-priority', DEFAULT_MAX_USER_PRIORITY, 0);

/** The LSF row of the batch command table. */
export const LSF: BatchSystem = {
  command: 'lsf',
  label: 'LSF',
  submit: 'bsub',
  queue: 'bjobs',
  defaults: BATCH_RUNNER_DEFAULTS,
  description:
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
  help: {
    rateCommands: 'bsub, bkill, bmod and accounting',
    pendingGrace: 'how long a job may pend for "There are no suitable hosts for the job" before its container is cancelled with that reason',
    noAccounting: 'do not ask bjobs -a why a job ended',
    hosts: 'execution hosts',
    args: 'bsub argument template (Containers.LSF.BsubArgumentsList); giving any replaces the default list. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %G GPUs, %W max run time in minutes (a "-W %W" or "-We %W" pair is left out without one), %% a literal %',
    defaultArgs: DEFAULT_BSUB_ARGUMENTS,
    gpuArgs: 'templates added for containers that want GPUs (BsubGPUArguments)',
    defaultGpuArgs: DEFAULT_BSUB_GPU_ARGUMENTS,
    prioritySpread: 'user priority gap between adjacent pending jobs',
    prioritySpreadDefault: 1,
  },
  minPrioritySpread: 1,
  options: {
    'bsub-sudo-user': { type: 'string', metavar: 'USER', help: 'submit as USER through "sudo -E -u USER bsub" (BsubSudoUser); bjobs then lists USER\'s jobs; \'\' submits as this process\'s user', default: DEFAULT_BSUB_SUDO_USER },
    'max-run-time-overhead': {
      type: 'string',
      metavar: 'DURATION',
      default: formatDuration(DEFAULT_MAX_RUN_TIME_OVERHEAD),
      help: "added to a container's max_run_time for %W (MaxRunTimeOverhead)",
    },
    'max-run-time-default': { type: 'string', metavar: 'DURATION', default: '0s', help: 'max run time for containers without one (MaxRunTimeDefault); 0 for none' },
    'max-user-priority': {
      type: 'string',
      metavar: 'N',
      default: String(DEFAULT_MAX_USER_PRIORITY),
      help: 'MAX_USER_PRIORITY of lsb.params: pending jobs get user priorities (bmod -sp) counting down from it in Arvados order; 0 turns this off',
    },
  },
  executables: (opts) => ['bsub', 'bjobs', 'bkill', ...(maxUserPriority(opts) > 0 ? ['bmod'] : []), ...(bsubSudoUser(opts) ? ['sudo'] : [])],
  missingIsUsage: false,
  hostKind: 'an LSF submission host',
  createRunner: (common, t, opts) =>
    new LsfRunner({
      ...common,
      bsubArgs: t.args,
      bsubGpuArgs: t.gpuArgs,
      sudoUser: bsubSudoUser(opts),
      maxRunTimeOverhead: opts.duration('max-run-time-overhead', DEFAULT_MAX_RUN_TIME_OVERHEAD),
      maxRunTimeDefault: opts.duration('max-run-time-default', 0),
      maxUserPriority: maxUserPriority(opts),
    }),
  startExtras: (opts) => {
    const sudoUser = bsubSudoUser(opts);
    return { prefix: sudoUser ? `sudo -E -u ${sudoUser} ` : '', fields: { sudo_user: sudoUser ?? null } };
  },
};

/**
 * `--bsub-sudo-user`, else the config's `BsubSudoUser`, else `crunch` as in
 * Arvados; an empty value (flag or key) turns sudo off.
 */
export function bsubSudoUser(opts: Options): string | undefined {
  const given = opts.givenString('bsub-sudo-user') ?? clusterSections(opts.config).bsubSudoUser ?? DEFAULT_BSUB_SUDO_USER;
  return given.trim() === '' ? undefined : given.trim();
}

/** The `--help` text. */
export function help(): string {
  return batchHelp(LSF);
}

/** Runs the command; resolves to the exit status. */
export function run(argv: string[]): Promise<number> {
  return runBatchCommand(LSF, argv);
}
