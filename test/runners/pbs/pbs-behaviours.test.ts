/**
 * The shared batch behaviour list (test/runners/batch/behaviour.ts) with
 * PBS, its commands answered in-process by the PBS stand-in behind the
 * command seam (the jobs themselves run on this machine). Plus what is
 * PBS's own: a "Can Never Run" comment cancels the container after the
 * grace, and why a job ended comes from the job history (qstat -x).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from '@jest/globals';
import { waitFor } from '../../helpers/wait.js';
import { TEST_TIMEOUT, WAIT, defineBatchBehaviour } from '../batch/behaviour.js';
import { pbsEnvironment } from './pbs-env.js';

const env = pbsEnvironment('in-process');
afterAll(() => env.cleanup());

defineBatchBehaviour(env, (ctx) => {
  it('cancels a container whose job the scheduler says can never run, with that reason, after the grace', async () => {
    writeFileSync(join(env.dir, 'table', 'comment'), 'Can Never Run: Insufficient amount of resource: ncpus (R: 64 A: 8 T: 8)');
    writeFileSync(join(env.dir, 'table', 'hold'), '');
    try {
      const h = ctx.start({ neverClearsGrace: 300 });
      const c = ctx.container({ env: { STUB_MODE: 'hang' } });
      await ctx.settledOk(h, c.uuid);
      await waitFor(() => ctx.stateOf(c.uuid) === 'Cancelled', 'Cancelled', WAIT);
      expect(String(ctx.fake().container(c.uuid)?.runtime_status?.error)).toMatch(/Can Never Run: Insufficient amount of resource: ncpus/);
      await waitFor(async () => (await env.jobs(c.uuid)).length === 0, 'the job deleted', WAIT);
    } finally {
      rmSync(join(env.dir, 'table', 'comment'), { force: true });
      rmSync(join(env.dir, 'table', 'hold'), { force: true });
    }
  }, TEST_TIMEOUT);

  it('submits with -N <uuid> -r n and the expanded select/walltime templates, never -V', async () => {
    const h = ctx.start();
    const c = ctx.container({ env: { STUB_MODE: 'complete', STUB_RUN_MS: '100' }, scheduling_parameters: { max_run_time: 90 } });
    await ctx.settledOk(h, c.uuid);
    const qsub = h.calls.filter((x) => x.cmd === 'qsub');
    expect(qsub).toHaveLength(1);
    expect(qsub[0].args.slice(0, 4)).toEqual(['-N', c.uuid, '-r', 'n']);
    expect(qsub[0].args).toEqual(expect.arrayContaining(['-l', 'select=1:ncpus=1:mem=64mb', 'walltime=2:00']));
    expect(qsub[0].args).not.toContain('-V');
  }, TEST_TIMEOUT);
});
