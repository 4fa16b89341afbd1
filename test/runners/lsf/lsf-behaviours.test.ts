/**
 * The shared batch behaviour list (test/runners/batch/behaviour.ts) with
 * LSF, its commands answered in-process by the LSF stand-in behind the
 * command seam (./fake-lsf.ts; the jobs themselves run on this machine).
 * No LSF can run on these machines. Plus what is LSF's own: a pending
 * reason that never clears, and BsubSudoUser.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { LsfRunner, type LsfRunnerOptions } from '../../../src/runners/batch/lsf/adapter.js';
import { BJOBS_FINAL_FIELDS, lsfEnd } from '../../../src/runners/batch/lsf/output.js';
import { DEFAULT_BSUB_ARGUMENTS } from '../../../src/runners/batch/lsf/template.js';
import { waitFor } from '../../helpers/wait.js';
import { TEST_TIMEOUT, WAIT, defineBatchBehaviour, type SeenJob } from '../batch/behaviour.js';
import { withFailingSubmit } from '../batch/failing-submit.js';
import { FakeLsf } from './fake-lsf.js';

const lsf = new FakeLsf();
afterAll(() => lsf.close());

function run(name: string, args: string[], input?: string): string {
  const r = lsf.command(name, args, { input });
  if (r.code !== 0 && name !== 'bkill') throw new Error(`${name} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function all(): SeenJob[] {
  const report = JSON.parse(run('bjobs', ['-u', 'all', '-o', 'jobid stat job_name job_priority pend_reason', '-json'])) as {
    RECORDS: Array<Record<string, string>>;
  };
  return report.RECORDS.map((r) => ({
    id: r.JOBID,
    name: r.JOB_NAME,
    state: r.STAT === 'PEND' ? 'pending' : r.STAT === 'RUN' ? 'running' : 'other',
    priority: Number(r.JOB_PRIORITY),
    pendingReason: r.PEND_REASON.replace(/;$/, ''),
  }));
}

// Held (-b) jobs stay pending until killed.
const HOLD = [...DEFAULT_BSUB_ARGUMENTS, '-b', '23:59'];

defineBatchBehaviour(
  {
    name: 'LSF (in-process stand-in)',
    accounting: true,
    unavailable: undefined,
    // LSF's own options (sudoUser, commands) come through the shared harness too.
    runner: (o) => {
      const { args, gpuArgs, failingSubmit, jobOutputDir: _unused, ...options } = o as typeof o & LsfRunnerOptions;
      return new LsfRunner({
        ...options,
        bsubArgs: args,
        bsubGpuArgs: gpuArgs,
        commands: { ...options.commands, ...(failingSubmit ? { bsub: failingSubmit } : {}) },
        // As the stand-in's lsb.params would say: MAX_USER_PRIORITY=100.
        maxUserPriority: 100,
      });
    },
    commandRunner: withFailingSubmit(lsf.runner, 'bsub'),
    interval: 50,
    commands: { submit: 'bsub', cancel: 'bkill', renice: 'bmod' },
    jobs: (name) => all().filter((j) => j.name === name),
    remove: (name) => {
      const ids = all().filter((j) => j.name === name).map((j) => j.id);
      if (ids.length) run('bkill', ids);
    },
    submitSleep: (name) => void run('bsub', ['-J', name, '-o', '/dev/null'], 'sleep 600\n'),
    holdArgs: HOLD,
    realSubmit: 'bsub',
  },
  (ctx) => {
    it('cancels a container whose job pends because no host can ever take it, with that reason, after the grace', async () => {
      lsf.pendReason = 'There are no suitable hosts for the job;';
      try {
        const h = ctx.start({ args: HOLD, neverClearsGrace: 300 });
        const c = ctx.container({ env: { STUB_MODE: 'hang' } });
        await ctx.settledOk(h, c.uuid);
        await waitFor(() => ctx.stateOf(c.uuid) === 'Cancelled', 'Cancelled', WAIT);
        expect(String(ctx.fake().container(c.uuid)?.runtime_status?.error)).toMatch(/There are no suitable hosts for the job/);
        await waitFor(() => all().every((j) => j.name !== c.uuid), 'the job killed', WAIT);
      } finally {
        lsf.pendReason = undefined;
      }
    }, TEST_TIMEOUT);

    it('submits through sudo -E -u BsubSudoUser, follows that user\'s jobs, and the credentials survive sudo', async () => {
      // A user that exists here: the secrets file is chowned to it (we run as root; the stand-in sudo does not switch users).
      const lsfOptions: Partial<LsfRunnerOptions> = { sudoUser: 'nobody', secretsDir: join(ctx.work(), 'secrets-nobody') };
      const h = ctx.start(lsfOptions as Parameters<typeof ctx.start>[0]);
      const c = ctx.container({ env: { STUB_MODE: 'complete', STUB_RUN_MS: '200' } });
      await ctx.settledOk(h, c.uuid);
      expect(ctx.stateOf(c.uuid)).toBe('Complete');
      const calls = lsf.calls.filter((x) => x.args.includes(c.uuid));
      expect(calls.filter((x) => x.command === 'bsub')).toEqual([expect.objectContaining({ user: 'nobody' })]);
      expect(h.calls.filter((x) => x.cmd === 'sudo')).toHaveLength(1);
      const queries = h.calls.filter((x) => x.cmd === 'bjobs' && x.args[0] === '-u');
      expect(queries.length).toBeGreaterThan(0);
      expect(queries.every((x) => x.args[1] === 'all')).toBe(true);
    }, TEST_TIMEOUT);
  },
);

describe('the LSF stand-in: how a job ended after a bkill', () => {
  let dir = '';
  beforeAll(() => void (dir = mkdtempSync(join(tmpdir(), 'fake-lsf-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Submits `script` (which creates $READY once it is ready for the signal), kills the job then, and reads how it ended. */
  async function killedWhileRunning(name: string, script: string): Promise<ReturnType<typeof lsfEnd>> {
    const ready = join(dir, `${name}.ready`);
    const id = /Job <(\d+)>/.exec(run('bsub', ['-J', name, '-o', '/dev/null'], `READY='${ready}'\n${script}`))![1];
    await waitFor(() => existsSync(ready), 'the job ready for the signal', WAIT);
    run('bkill', [id]);
    return waitFor(() => {
      const end = lsfEnd(run('bjobs', ['-a', '-o', BJOBS_FINAL_FIELDS, '-json', id]));
      return end;
    }, 'the job ended', WAIT);
  }

  // The runner kills a finished container's job that is still listed; crunch-run, done by then, exits 0.
  it('a job that outlives the kill signal and exits 0 is DONE (COMPLETED), not EXIT', async () => {
    const script = "trap '' INT TERM\ntouch \"$READY\"\nsleep 0.2\nexit 0\n";
    await expect(killedWhileRunning('outlives', script)).resolves.toMatchObject({ kind: 'COMPLETED' });
  }, TEST_TIMEOUT);

  it('a job that dies of the kill signal is EXIT, killed (CANCELLED)', async () => {
    await expect(killedWhileRunning('dies', 'touch "$READY"\nexec sleep 600\n')).resolves.toMatchObject({ kind: 'CANCELLED' });
  }, TEST_TIMEOUT);
});
