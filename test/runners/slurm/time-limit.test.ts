/**
 * The Slurm runner against a real Slurm (scripts/slurm-up.sh): a job past
 * its time limit. Slurm's shortest limit is a minute and slurmctld looks for
 * jobs past theirs every 30 s, so this one test waits 60-90 s on Slurm: it
 * has a file of its own, which the system tier starts first (see
 * test/sequencer.mjs), so that the other files run beside it. The rest of
 * the Slurm runner's tests are in integration.test.ts. Skipped, with a
 * warning, where `sinfo` does not answer.
 */
import { expect, it } from '@jest/globals';
import { DEFAULT_SBATCH_ARGUMENTS } from '../../../src/runners/batch/slurm/adapter.js';
import { WAIT, defineBatchTests } from '../batch/behaviour.js';
import { waitFor } from '../../helpers/wait.js';
import { realSlurm } from './real-slurm-env.js';

const { env } = await realSlurm();

defineBatchTests(env, 'Slurm runner: a job past its time limit', (ctx) => {
  it('says why a job ended: a job past its time limit (--time=1) releases its container with "reached its time limit"', async () => {
    const h = ctx.start({ args: [...DEFAULT_SBATCH_ARGUMENTS, '--time=1'] });
    const c = ctx.container({ env: { STUB_MODE: 'mute' } });
    await waitFor(() => h.lost.length > 0, 'the job to time out', 4 * WAIT);
    expect(h.lost[0]).toMatchObject({ uuid: c.uuid, action: 'cancelled', terminal: { kind: 'TIMEOUT' } });
    expect(h.lost[0].reason).toMatch(/^Slurm job \d+ reached its time limit/);
    await ctx.settledOk(h, c.uuid);
    expect(ctx.stateOf(c.uuid)).toBe('Cancelled');
    expect(String(ctx.fake().container(c.uuid)?.runtime_status?.error)).toMatch(/reached its time limit/);
    expect(ctx.fake().logs.some((l) => l.object_uuid === c.uuid && /reached its time limit/.test(String(l.properties.text)))).toBe(true);
    expect(h.finished).toContainEqual([c.uuid, 'TIMEOUT']);
  }, 6 * WAIT);
});
