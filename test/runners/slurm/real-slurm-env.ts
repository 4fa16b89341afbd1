/**
 * The shared batch behaviour list's environment for the real Slurm of
 * scripts/slurm-up.sh, for the system-tier files that run behaviour tests
 * against it (integration.test.ts, time-limit.test.ts).
 */
import { DEFAULT_SBATCH_ARGUMENTS, SlurmRunner } from '../../../src/runners/batch/slurm/adapter.js';
import type { JobState } from '../../../src/runners/batch/adapter.js';
import type { BatchEnvironment, SeenJob } from '../batch/behaviour.js';
import { runWithInput } from '../../helpers/exec.js';
import { slurmUnavailable } from '../../helpers/slurm.js';

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await runWithInput(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const STATES: Record<string, JobState> = { PENDING: 'pending', RUNNING: 'running', CONFIGURING: 'running' };

/** Jobs named `name` in the queue now. */
export async function jobs(name: string): Promise<SeenJob[]> {
  const out = await sh('squeue', ['--noheader', `--name=${name}`, '--format=%i|%j|%Q|%T|%r']);
  return out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id, n, priority, state, reason] = l.trim().split('|');
      return { id, name: n, priority: Number(priority), state: STATES[state] ?? 'other', pendingReason: reason };
    })
    .filter((j) => j.name === name);
}

/** Submits `sbatch --wrap='sleep 600'` named `name` as the Unix user `user`. */
export async function submitSleepAs(user: string, name: string): Promise<void> {
  await sh('runuser', ['-u', user, '--', 'sbatch', `--job-name=${name}`, '--mem=16', '--output=/dev/null', '--chdir=/tmp', '--wrap=sleep 600']);
}

/** The real Slurm as a behaviour environment, and `scontrol show config` (empty where Slurm is unavailable). */
export async function realSlurm(): Promise<{ env: BatchEnvironment; config: string }> {
  const unavailable = await slurmUnavailable().then((why) => why && `${why}. Run scripts/slurm-up.sh as root to enable them`);
  // Read once: whether Slurm enforces memory limits decides whether the OOM test runs.
  const config = unavailable ? '' : (await runWithInput('scontrol', ['show', 'config'])).stdout;
  const realSbatch = unavailable ? 'sbatch' : (await sh('sh', ['-c', 'command -v sbatch'])).trim();
  const env: BatchEnvironment = {
    name: 'Slurm',
    unavailable,
    runner: ({ failingSubmit, jobOutputDir, args, gpuArgs, ...core }) =>
      new SlurmRunner({ ...core, jobOutputDir, sbatchArgs: args, sbatchGpuArgs: gpuArgs, ...(failingSubmit ? { commands: { sbatch: failingSubmit } } : {}) }),
    commands: { submit: 'sbatch', cancel: 'scancel', renice: 'scontrol' },
    jobs,
    remove: async (name) => void (await runWithInput('scancel', [`--name=${name}`])),
    submitSleep: async (name) => void (await sh('sbatch', [`--job-name=${name}`, '--mem=16', '--output=/dev/null', '--chdir=/tmp', '--wrap=sleep 600'])),
    // Jobs that may not start for an hour stay pending, whatever else runs.
    holdArgs: [...DEFAULT_SBATCH_ARGUMENTS, '--begin=now+3600'],
    realSubmit: realSbatch,
    asOtherUser: {
      show: async (id) => {
        const r = await runWithInput('runuser', ['-u', 'nobody', '--', 'scontrol', 'show', 'job', '-dd', id]);
        return `${r.stdout}${r.stderr}`;
      },
      spools: ['/var/spool/slurmctld', '/var/spool/slurmd'],
      release: async (id) => void (await sh('scontrol', ['update', `JobId=${id}`, 'StartTime=now'])),
    },
    accounting: true,
  };
  return { env, config };
}
