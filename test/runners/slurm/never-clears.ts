// A Slurm-only case of the behaviour runs, shared by the in-process Slurm
// (slurm-behaviours.test.ts) and the real one (integration.test.ts): a job
// pending for a reason that can never clear is cancelled after the grace.
import { expect, it } from '@jest/globals';
import { waitFor } from '../../helpers/wait.js';
import { WAIT, type BehaviourContext, type SeenJob } from '../batch/behaviour.js';

/** Defines the test in the calling describe block; `jobs` reads the queue as the test sees it. */
export function itCancelsWhenPendingNeverClears(
  ctx: BehaviourContext,
  jobs: (name: string) => SeenJob[] | Promise<SeenJob[]>,
  opts: { neverClearsGrace: number; timeout: number },
): void {
  it('cancels a container whose job is pending for a reason that can never clear (more CPUs than any node), with the reason, after the grace', async () => {
    const h = ctx.start({ neverClearsGrace: opts.neverClearsGrace });
    const statuses: string[] = [];
    const c = ctx.container({ runtime_constraints: { ram: 64 * 2 ** 20, vcpus: 64 }, env: { STUB_MODE: 'hang' } });
    await waitFor(() => {
      const s = h.runner.schedulingStatus(c.uuid);
      if (s) statuses.push(s);
      return ctx.stateOf(c.uuid) === 'Cancelled';
    }, 'cancelled', WAIT);
    expect(statuses).toContain('Slurm: pending (PartitionConfig)');
    expect(h.warnings.filter((w) => w.includes(c.uuid) && /PartitionConfig/.test(w))).toHaveLength(1);
    expect(String(ctx.fake().container(c.uuid)?.runtime_status?.error)).toMatch(/^Slurm job \d+ cannot start: pending with reason PartitionConfig/);
    await ctx.settledOk(h, c.uuid);
    expect(await jobs(c.uuid)).toEqual([]);
  }, opts.timeout);
}
