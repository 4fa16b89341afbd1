/**
 * The shared batch behaviour list (test/runners/batch/behaviour.ts) with
 * Slurm, its commands answered in-process by the in-memory Slurm
 * (./fake-slurm.ts with `run: true`: the jobs themselves run on this
 * machine). integration.test.ts runs the same list against a real Slurm, in
 * the system tier. Plus what is Slurm's own: a pending reason that can
 * never clear.
 */
import { afterAll } from '@jest/globals';
import { DEFAULT_SBATCH_ARGUMENTS, SQUEUE_FORMAT, SlurmRunner } from '../../../src/runners/batch/slurm/adapter.js';
import type { JobState } from '../../../src/runners/batch/adapter.js';
import { itCancelsWhenPendingNeverClears } from './never-clears.js';
import { TEST_TIMEOUT, defineBatchBehaviour, type SeenJob } from '../batch/behaviour.js';
import { withFailingSubmit } from '../batch/failing-submit.js';
import { FakeSlurm } from './fake-slurm.js';

const slurm = new FakeSlurm({ run: true, cpus: 8 });
afterAll(() => slurm.close());

function sh(cmd: string, args: string[]): string {
  const r = slurm.command(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const STATES: Record<string, JobState> = { PENDING: 'pending', RUNNING: 'running', CONFIGURING: 'running' };

/** Jobs named `name` in the queue now. */
function jobs(name: string): SeenJob[] {
  return sh('squeue', ['--noheader', `--format=${SQUEUE_FORMAT}`])
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id, n, _nice, priority, state, _nodes, reason] = l.trim().split('|');
      return { id, name: n, priority: Number(priority), state: STATES[state] ?? 'other', pendingReason: reason };
    })
    .filter((j) => j.name === name);
}

defineBatchBehaviour(
  {
    name: 'Slurm (in-process stand-in)',
    accounting: true,
    unavailable: undefined,
    runner: ({ failingSubmit, jobOutputDir, args, gpuArgs, ...core }) =>
      new SlurmRunner({ ...core, jobOutputDir, sbatchArgs: args, sbatchGpuArgs: gpuArgs, ...(failingSubmit ? { commands: { sbatch: failingSubmit } } : {}) }),
    commandRunner: withFailingSubmit(slurm.runner, 'sbatch'),
    interval: 50,
    commands: { submit: 'sbatch', cancel: 'scancel', renice: 'scontrol' },
    jobs,
    remove: (name) => void sh('scancel', [`--name=${name}`]),
    submitSleep: (name) => void sh('sbatch', [`--job-name=${name}`, '--mem=16', '--output=/dev/null', '--chdir=/tmp', '--wrap=sleep 600']),
    // Jobs that may not start for an hour stay pending, whatever else runs.
    holdArgs: [...DEFAULT_SBATCH_ARGUMENTS, '--begin=now+3600'],
    realSubmit: 'sbatch',
  },
  (ctx) => {
    itCancelsWhenPendingNeverClears(ctx, jobs, { neverClearsGrace: 300, timeout: TEST_TIMEOUT });
  },
);
