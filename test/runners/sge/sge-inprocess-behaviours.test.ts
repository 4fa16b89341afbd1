/**
 * The shared batch behaviour list (test/runners/batch/behaviour.ts) with
 * Grid Engine, its commands answered in-process by the Grid Engine
 * stand-in behind the command seam (./fake-sge.ts; the jobs themselves run
 * on this machine). sge-behaviours.test.ts runs the same list against a real
 * Grid Engine, in the system tier. Plus what is Grid Engine's own: a job in
 * the error state, which never clears.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { DEFAULT_QSUB_ARGUMENTS } from '../../../src/runners/batch/sge/adapter.js';
import { parseQacct, sgeEnd } from '../../../src/runners/batch/sge/qacct.js';
import { sgeJobName } from '../../../src/runners/batch/sge/name.js';
import { waitFor } from '../../helpers/wait.js';
import { TEST_TIMEOUT, WAIT, defineBatchBehaviour, type SeenJob } from '../batch/behaviour.js';
import { withFailingSubmit } from '../batch/failing-submit.js';
import { FakeSge } from './fake-sge.js';
import { seenJobs, sgeRunnerFactory } from './sge-env.js';

const sge = new FakeSge();
afterAll(() => sge.close());

function sh(cmd: string, args: string[], input?: string): string {
  const r = sge.command(cmd, args, { input });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

function jobs(name: string): SeenJob[] {
  return seenJobs(sh('qstat', ['-u', '*', '-xml', '-pri']), name);
}

defineBatchBehaviour(
  {
    name: 'Grid Engine (in-process stand-in)',
    accounting: true,
    unavailable: undefined,
    // The stand-in writes a job's record as it ends: no flush to wait for.
    runner: sgeRunnerFactory({ accountingDelay: 50, accountingAttempts: 3 }),
    commandRunner: withFailingSubmit(sge.runner, 'qsub'),
    interval: 50,
    commands: { submit: 'qsub', cancel: 'qdel', renice: 'qalter' },
    jobs,
    remove: (name) => {
      const ids = jobs(name).map((j) => j.id);
      if (ids.length) sge.command('qdel', ids);
    },
    submitSleep: (name) => void sh('qsub', ['-terse', '-N', sgeJobName(name), '-S', '/bin/sh', '-o', '/dev/null', '-e', '/dev/null'], 'sleep 600\n'),
    // Held (-h) jobs stay pending until deleted.
    holdArgs: [...DEFAULT_QSUB_ARGUMENTS, '-h'],
    realSubmit: 'qsub',
  },
  (ctx) => {
    it('cancels a container whose job is in the error state, with that reason, after the grace', async () => {
      // A job whose output file cannot be opened goes to the error state Eqw.
      const h = ctx.start({ args: ['-o', '/nonexistent/arvados-dispatch/out', '-e', '/dev/null'], neverClearsGrace: 300 });
      const c = ctx.container({ env: { STUB_MODE: 'hang' } });
      await ctx.settledOk(h, c.uuid);
      await waitFor(() => ctx.stateOf(c.uuid) === 'Cancelled', 'Cancelled', WAIT);
      expect(String(ctx.fake().container(c.uuid)?.runtime_status?.error)).toMatch(/error state \(Eqw\)/);
      await waitFor(() => jobs(c.uuid).length === 0, 'the job deleted', WAIT);
    }, TEST_TIMEOUT);
  },
);

describe('the Grid Engine stand-in: accounting after a qdel', () => {
  let dir = '';
  beforeAll(() => void (dir = mkdtempSync(join(tmpdir(), 'fake-sge-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Submits `script` (which creates $READY once it is ready for the signal), deletes the job then, and reads how it ended. */
  async function deletedWhileRunning(name: string, script: string): Promise<ReturnType<typeof sgeEnd>> {
    const ready = join(dir, `${name}.ready`);
    const id = sh('qsub', ['-terse', '-N', name, '-S', '/bin/sh', '-o', '/dev/null', '-e', '/dev/null'], `READY='${ready}'\n${script}`).trim();
    await waitFor(() => existsSync(ready), 'the job ready for the signal', WAIT);
    sh('qdel', [id]);
    const acct = await waitFor(() => {
      const r = sge.command('qacct', ['-j', id]);
      return r.code === 0 && parseQacct(r.stdout);
    }, 'the accounting record', WAIT);
    return sgeEnd(acct);
  }

  // The runner deletes a finished container's job that is still listed; crunch-run, done by then, exits 0.
  it('a job that outlives the SIGTERM and exits 0 is COMPLETED (failed 0), not FAILED', async () => {
    const script = "trap '' TERM\ntouch \"$READY\"\nsleep 0.2\nexit 0\n";
    await expect(deletedWhileRunning('outlives', script)).resolves.toMatchObject({ kind: 'COMPLETED', exitCode: 0 });
  }, TEST_TIMEOUT);

  it('a job that dies of the SIGTERM is CANCELLED (failed 100, exit status 143)', async () => {
    await expect(deletedWhileRunning('dies', 'touch "$READY"\nexec sleep 600\n')).resolves.toMatchObject({ kind: 'CANCELLED', exitCode: 143 });
  }, TEST_TIMEOUT);
});
