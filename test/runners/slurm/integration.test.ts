/**
 * The Slurm runner against a real Slurm (scripts/slurm-up.sh): the shared
 * batch behaviour list, then what only Slurm can show here (why a job
 * ended, pending reasons that never clear, a refused partition, the command
 * rate under a burst). A job past its time limit, which takes Slurm a minute
 * or more, is in time-limit.test.ts. Skipped, with a warning, where `sinfo`
 * does not answer.
 */
import { expect, it } from '@jest/globals';
import { DEFAULT_SBATCH_ARGUMENTS } from '../../../src/runners/batch/slurm/adapter.js';
import type { CommandRecord } from '../../../src/runners/batch/exec.js';
import { WAIT, defineBatchBehaviour } from '../batch/behaviour.js';
import { runWithInput } from '../../helpers/exec.js';
import { waitFor } from '../../helpers/wait.js';
import { itCancelsWhenPendingNeverClears } from './never-clears.js';
import { jobs, realSlurm, submitSleepAs } from './real-slurm-env.js';

const { env, config: slurmConfig } = await realSlurm();
const unavailable = env.unavailable;

defineBatchBehaviour(
  env,
  (ctx) => {
    // Needs memory enforcement: scripts/slurm-up.sh configures task/cgroup where
    // a cgroup memory controller exists; elsewhere a job runs past --mem.
    const enforced = !unavailable && /task\/cgroup/.test(slurmConfig);
    if (!enforced) console.warn('SKIPPING the Slurm OOM test: no memory enforcement (TaskPlugin is not task/cgroup; run scripts/slurm-up.sh)');
    (enforced ? it : it.skip)('says why a job ended: a job past its --mem releases its container with "ran out of memory (requested 128 MiB)"', async () => {
      const h = ctx.start();
      const c = ctx.container({ runtime_constraints: { ram: 128 * 2 ** 20, vcpus: 1 }, env: { STUB_MODE: 'oom' } });
      await waitFor(() => h.lost.length > 0, 'the job to run out of memory', 2 * WAIT);
      expect(h.lost[0]).toMatchObject({ uuid: c.uuid, action: 'cancelled', terminal: { kind: 'OUT_OF_MEMORY' } });
      expect(h.lost[0].reason).toMatch(/^Slurm job \d+ ran out of memory \(requested 128 MiB/);
      await ctx.settledOk(h, c.uuid);
      expect(String(ctx.fake().container(c.uuid)?.runtime_status?.error)).toBe(h.lost[0].reason);
      expect(h.finished).toContainEqual([c.uuid, 'OUT_OF_MEMORY']);
    }, 3 * WAIT);

    itCancelsWhenPendingNeverClears(ctx, jobs, { neverClearsGrace: 1_000, timeout: 2 * WAIT });

    it('releases a container that sbatch refuses (no such partition) with the reason, once, without a job', async () => {
      const h = ctx.start({ args: [...DEFAULT_SBATCH_ARGUMENTS, '--partition=no-such-partition'], minRetryPeriod: 60_000 });
      const submitted: string[] = [];
      h.runner.on('submitted', (_u, result) => submitted.push(result));
      const c = ctx.container({ env: { STUB_MODE: 'complete' } });
      await waitFor(() => h.settled.has(c.uuid), 'runner settled', WAIT);
      expect(h.settled.get(c.uuid)).toBeUndefined();
      await waitFor(() => ctx.stateOf(c.uuid) === 'Queued', 'unlocked', WAIT);
      await waitFor(() => ctx.fake().logs.some((l) => l.object_uuid === c.uuid), 'dispatch log', 10_000);
      expect(String(ctx.fake().logs.find((l) => l.object_uuid === c.uuid)?.properties.text)).toMatch(/Slurm refused the job: .*[Ii]nvalid partition/);
      expect(submitted).toEqual(['error']);
      expect(await jobs(c.uuid)).toEqual([]);
    }, 2 * WAIT);

    it('keeps sbatch, scancel and scontrol under --submit-rate through a burst of queued containers (counted)', async () => {
      const rate = { count: 4, periodMs: 1_000 };
      const h = ctx.start({ submitRate: rate, args: [...DEFAULT_SBATCH_ARGUMENTS, '--begin=now+3600'] });
      const records: Array<CommandRecord & { at: number }> = [];
      h.runner.on('command', (r) => records.push({ ...r, at: Date.now() }));
      const cs = Array.from({ length: 16 }, () => ctx.container({ env: { STUB_MODE: 'hang' } }));
      await waitFor(async () => (await Promise.all(cs.map((c) => jobs(c.uuid)))).every((j) => j.length === 1), 'all submitted', 2 * WAIT);
      for (const c of cs) ctx.fake().setPriority(c.uuid, 0);
      for (const c of cs) await ctx.settledOk(h, c.uuid);
      // Completion times of limited commands: between any two, at most the
      // burst plus what the elapsed time earned, plus the commands that were
      // already running (concurrency 3) when the window opened.
      const limited = records.filter((r) => r.command !== 'squeue').map((r) => r.at);
      expect(records.filter((r) => r.command === 'sbatch')).toHaveLength(16);
      // Cancellations are batched: far fewer scancels than jobs.
      expect(records.filter((r) => r.command === 'scancel').length).toBeGreaterThan(0);
      for (let i = 0; i < limited.length; i++) {
        for (let j = i + 1; j < limited.length; j++) {
          const earned = Math.floor(((limited[j] - limited[i]) * rate.count) / rate.periodMs);
          expect(j - i + 1).toBeLessThanOrEqual(rate.count + earned + 3);
        }
      }
      expect(h.runner.status.atQuota).toBe(false);
    }, 4 * WAIT);

    it("follows another Unix user's job for a container our token holds (no cancel, no resubmission), and never touches jobs of containers it does not hold", async () => {
      const fake = ctx.fake();
      const ours = ctx.container({ env: { STUB_MODE: 'hang' } });
      fake.forceUpdate(ours.uuid, { state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
      const theirs = ctx.container({ env: { STUB_MODE: 'hang' } });
      fake.forceUpdate(theirs.uuid, { state: 'Locked', locked_by_uuid: 'zzzzz-gj3su-0therd1spatcher' });
      try {
        await submitSleepAs('nobody', ours.uuid);
        await submitSleepAs('nobody', theirs.uuid);
        const h = ctx.start({ vanishGrace: { misses: 2, ms: 0 } });
        await waitFor(() => h.d.container(ours.uuid) !== undefined, 'ours adopted', WAIT);
        // Many queue runs go by: nothing is submitted, cancelled or released.
        const runs = (): number => h.calls.filter((c) => c.cmd === 'squeue').length;
        const target = runs() + 6;
        await waitFor(() => runs() >= target, 'six squeue runs', WAIT);
        expect(h.calls.filter((c) => c.cmd === 'sbatch' || c.cmd === 'scancel')).toEqual([]);
        expect(await jobs(ours.uuid)).toHaveLength(1);
        expect(await jobs(theirs.uuid)).toHaveLength(1);
        expect(ctx.stateOf(ours.uuid)).toBe('Locked');
        expect(fake.container(theirs.uuid)?.locked_by_uuid).toBe('zzzzz-gj3su-0therd1spatcher');
        expect(h.d.container(theirs.uuid)).toBeUndefined();
        expect(h.lost).toEqual([]);
        // The status counts only our jobs: the other dispatcher's is not one.
        expect(h.runner.status.inQueue).toBe(1);
      } finally {
        await runWithInput('scancel', [`--name=${ours.uuid}`]);
        await runWithInput('scancel', [`--name=${theirs.uuid}`]);
      }
    }, 2 * WAIT);
  },
);
