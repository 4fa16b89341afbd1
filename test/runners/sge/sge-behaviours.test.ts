/**
 * The shared batch behaviour list (test/runners/batch/behaviour.ts) with
 * Grid Engine: a real single-node Son of Grid Engine (scripts/sge-up.sh)
 * running the crunch-run simulator. Plus what is Grid Engine's own: a job in
 * the error state, which never clears. Skipped, with a warning, where qstat
 * does not answer.
 */
import { expect, it } from '@jest/globals';
import { DEFAULT_QSUB_ARGUMENTS } from '../../../src/runners/batch/sge/adapter.js';
import { sgeJobName } from '../../../src/runners/batch/sge/name.js';
import { runWithInput } from '../../helpers/exec.js';
import { waitFor } from '../../helpers/wait.js';
import { TEST_TIMEOUT, WAIT, defineBatchBehaviour, type SeenJob } from '../batch/behaviour.js';
import { seenJobs, sgeEnv, sgeRunnerFactory, sgeUnavailable } from './sge-env.js';

const env = sgeEnv();
const unavailable = await sgeUnavailable();

async function sh(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await runWithInput(cmd, args, { env, input });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

async function jobs(name: string): Promise<SeenJob[]> {
  return seenJobs(await sh('qstat', ['-u', '*', '-xml', '-pri']), name);
}

defineBatchBehaviour(
  {
    name: 'Grid Engine',
    accounting: true,
    unavailable: unavailable && `${unavailable}. Run scripts/sge-up.sh as root to enable them`,
    runner: sgeRunnerFactory({ accountingDelay: 500, accountingAttempts: 6 }),
    commands: { submit: 'qsub', cancel: 'qdel', renice: 'qalter' },
    jobs,
    remove: async (name) => {
      const ids = (await jobs(name)).map((j) => j.id);
      if (ids.length) await runWithInput('qdel', ids, { env });
    },
    submitSleep: async (name) => void (await sh('qsub', ['-terse', '-N', sgeJobName(name), '-S', '/bin/sh', '-o', '/dev/null', '-e', '/dev/null'], 'sleep 600\n')),
    // Held (-h) jobs stay pending until deleted.
    holdArgs: [...DEFAULT_QSUB_ARGUMENTS, '-h'],
    realSubmit: unavailable ? 'qsub' : (await sh('sh', ['-c', 'command -v qsub'])).trim(),
    asOtherUser: {
      show: async (id) => {
        const r = await runWithInput('runuser', ['-u', 'nobody', '--', 'qstat', '-j', id], { env });
        return `${r.stdout}${r.stderr}`;
      },
      spools: ['/var/spool/gridengine'],
      release: async (id) => void (await sh('qrls', [id])),
    },
  },
  (ctx) => {
    it('cancels a container whose job is in the error state, with that reason, after the grace', async () => {
      // A job whose output file cannot be opened goes to the error state Eqw.
      const h = ctx.start({ args: ['-o', '/nonexistent/arvados-dispatch/out', '-e', '/dev/null'], neverClearsGrace: 1_000 });
      const c = ctx.container({ env: { STUB_MODE: 'hang' } });
      await ctx.settledOk(h, c.uuid);
      await waitFor(() => ctx.stateOf(c.uuid) === 'Cancelled', 'Cancelled', WAIT);
      expect(String(ctx.fake().container(c.uuid)?.runtime_status?.error)).toMatch(/error state \(Eqw\)/);
      await waitFor(async () => (await jobs(c.uuid)).length === 0, 'the job deleted', WAIT);
    }, TEST_TIMEOUT);
  },
);
