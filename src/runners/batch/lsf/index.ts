/**
 * IBM Spectrum LSF as one descriptor: everything `arvados-dispatch lsf` and
 * the batch core need to know about it (`arvados-dispatch-lsf`'s behaviour).
 *
 * @module
 */
import type { BatchSystemDescriptor, SystemOptionReader } from '../descriptor.js';
import { DEFAULT_MAX_USER_PRIORITY, LsfAdapter, type LsfAdapterOptions } from './adapter.js';
import { DEFAULT_BSUB_ARGUMENTS, DEFAULT_BSUB_GPU_ARGUMENTS, DEFAULT_MAX_RUN_TIME_OVERHEAD, LSF_TEMPLATE_RULES } from './template.js';

export * from './adapter.js';
export * from './template.js';
export { BjobsParseError, classifyLsf, lsfEnd, parseBjobs, parseBsubJobId } from './output.js';

/** Arvados' default `Containers.LSF.BsubSudoUser`. */
export const DEFAULT_BSUB_SUDO_USER = 'crunch';

/**
 * `--bsub-sudo-user`, else the config's `BsubSudoUser`, else `crunch` as in
 * Arvados; an empty value (flag or key) turns sudo off.
 */
export function bsubSudoUser(read: Pick<SystemOptionReader, 'rawString'>): string | undefined {
  const given = read.rawString('bsub-sudo-user') ?? DEFAULT_BSUB_SUDO_USER;
  return given.trim() === '' ? undefined : given.trim();
}

/** LSF: `bsub` (optionally through `sudo`), `bjobs`, `bkill`, `bmod`. */
export const lsf: BatchSystemDescriptor<LsfAdapterOptions> = {
  name: 'lsf',
  label: 'LSF',
  summary: 'submit queued containers to LSF as batch jobs',
  description:
    'Polls the Arvados API for queued containers, locks them and submits each to\n' +
    'LSF with bsub (job name = container UUID, then the argument templates), as a\n' +
    'batch script on stdin that execs\n' +
    '  <crunch-run-command> [ARG...] [--runtime-engine=E] <container-uuid>\n' +
    'The API credentials reach the job through its secrets file. One bjobs poller\n' +
    'follows our jobs and keeps pending ones in Arvados order (bmod -sp).\n' +
    'Priority 0 kills a job (bkill, until it is gone). A job that leaves the queue\n' +
    'on its own: its container is cancelled if Running, unlocked if Locked, with\n' +
    'the reason from bjobs -a (memory limit, run limit, killed...). A job pending\n' +
    'because no host can ever take it is cancelled with that reason after\n' +
    '--pending-grace. On stop, jobs are left in LSF for the next dispatcher.\n' +
    'Bad templates: exit 2; LSF commands missing on this host: exit 1.',
  commands: { submit: 'bsub', queue: 'bjobs' },
  templates: { rules: LSF_TEMPLATE_RULES, args: DEFAULT_BSUB_ARGUMENTS, gpuArgs: DEFAULT_BSUB_GPU_ARGUMENTS },
  capabilities: { priority: 'range', accounting: true, maxRunTime: 'adapter' },
  prioritySpread: { default: 1, min: 1 },
  help: {
    rateCommands: 'bsub, bkill, bmod and accounting',
    pendingGrace: 'how long a job may pend for "There are no suitable hosts for the job" before its container is cancelled with that reason',
    noAccounting: 'do not ask bjobs -a why a job ended',
    hosts: 'execution hosts',
    hostKind: 'an LSF submission host',
    args: 'bsub argument template (Containers.LSF.BsubArgumentsList); giving any replaces the default list. Placeholders: %U uuid, %C vCPUs, %M RAM MiB, %T scratch MiB, %G GPUs, %W max run time in minutes (a "-W %W" or "-We %W" pair is left out without one), %% a literal %',
    gpuArgs: 'templates added for containers that want GPUs (BsubGPUArguments)',
    prioritySpread: 'user priority gap between adjacent pending jobs',
  },
  options: {
    'bsub-sudo-user': {
      type: 'string',
      metavar: 'USER',
      help: 'submit as USER through "sudo -E -u USER bsub" (BsubSudoUser); bjobs then lists USER\'s jobs; \'\' submits as this process\'s user',
      default: DEFAULT_BSUB_SUDO_USER,
    },
    'max-run-time-overhead': {
      type: 'string',
      metavar: 'DURATION',
      default: `${DEFAULT_MAX_RUN_TIME_OVERHEAD / 60_000}m`,
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
  configKeys: [
    { key: 'Services.DispatchLSF.InternalURLs', flag: 'listen', kind: 'internal-urls' },
    { key: 'Containers.LSF.BsubSudoUser', flag: 'bsub-sudo-user', kind: 'string' },
    { key: 'Containers.LSF.BsubArgumentsList', flag: 'bsub-arg', kind: 'list' },
    { key: 'Containers.LSF.BsubGPUArguments', flag: 'bsub-gpu-arg', kind: 'list' },
    { key: 'Containers.LSF.MaxRunTimeOverhead', flag: 'max-run-time-overhead', kind: 'duration' },
    { key: 'Containers.LSF.MaxRunTimeDefault', flag: 'max-run-time-default', kind: 'duration' },
  ],
  knownUnusedKeys: { section: 'Containers.LSF', keys: ['BsubCUDAArguments'] },
  missingIsUsage: false,
  adapterOptions: (read) => ({
    sudoUser: bsubSudoUser(read),
    maxRunTimeOverhead: read.duration('max-run-time-overhead', DEFAULT_MAX_RUN_TIME_OVERHEAD),
    maxRunTimeDefault: read.duration('max-run-time-default', 0),
    maxUserPriority: read.integer('max-user-priority', DEFAULT_MAX_USER_PRIORITY, 0),
  }),
  executables: (o) => ['bsub', 'bjobs', 'bkill', ...((o.maxUserPriority ?? DEFAULT_MAX_USER_PRIORITY) > 0 ? ['bmod'] : []), ...(o.sudoUser ? ['sudo'] : [])],
  createAdapter: (options) => new LsfAdapter(options),
  startExtras: (o) => ({ prefix: o.sudoUser ? `sudo -E -u ${o.sudoUser} ` : '', fields: { sudo_user: o.sudoUser ?? null } }),
};
