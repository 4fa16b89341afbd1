/**
 * The batch behaviours (../sge/behaviours.ts) with LSF: no LSF can run on
 * these machines, so its commands are the stubs in ./bin, which keep a job
 * table on disk (a fresh directory per test, in $LSF_STUB_DIR), print LSF's
 * output formats, and run each job's script on this machine.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from '@jest/globals';
import { LsfRunner } from '../../../src/runners/batch/lsf.js';
import { describeBehaviours, type SeenJob } from '../sge/behaviours.js';

const BIN = resolve(dirname(fileURLToPath(import.meta.url)), 'bin');
const stub = (name: string): string => join(BIN, name);
const root = mkdtempSync('/tmp/arvados-dispatch-lsf-');
const dirs: string[] = [];
let dir = '';

function newTable(): void {
  dir = join(root, String(dirs.length));
  mkdirSync(dir);
  dirs.push(dir);
  // The stubs, run by the runner or by the tests, find their table here.
  process.env.LSF_STUB_DIR = dir;
}
newTable();

function run(name: string, args: string[], input?: string, tableDir = dir): string {
  const r = spawnSync(stub(name), args, { encoding: 'utf8', input, env: { ...process.env, LSF_STUB_DIR: tableDir } });
  if (r.status !== 0 && name !== 'bkill') throw new Error(`${name} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function jobsIn(tableDir: string, prefix: string): SeenJob[] {
  const report = JSON.parse(run('bjobs', ['-u', 'all', '-o', 'jobid stat job_name job_priority', '-json'], undefined, tableDir)) as {
    RECORDS: Array<Record<string, string>>;
  };
  return report.RECORDS.filter((r) => r.JOB_NAME.startsWith(prefix)).map((r) => ({
    id: r.JOBID,
    name: r.JOB_NAME,
    state: r.STAT === 'PEND' ? 'pending' : r.STAT === 'RUN' ? 'running' : 'other',
    priority: Number(r.JOB_PRIORITY),
  }));
}

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describeBehaviours({
  name: 'LSF (stub commands)',
  unavailable: undefined,
  submitCommand: 'bsub',
  stuckReason: /There are no suitable hosts for the job/,
  beforeEach: newTable,
  runner: (options, how) => {
    if (how.pending || how.stuck) writeFileSync(join(dir, 'hold'), '');
    if (how.stuck) writeFileSync(join(dir, 'pend-reason'), 'There are no suitable hosts for the job;');
    if (how.failAfterSubmit) {
      writeFileSync(join(dir, 'fail-bsub'), JSON.stringify({ submit: true, stderr: `LSF is down. Please wait ... (${how.failAfterSubmit})\n`, code: 255 }));
    }
    return new LsfRunner({
      ...options,
      commands: { bsub: stub('bsub'), bjobs: stub('bjobs'), bkill: stub('bkill'), bmod: stub('bmod') },
      // As the stub's lsb.params would say: MAX_USER_PRIORITY=100.
      maxUserPriority: 100,
    });
  },
  jobs: async (prefix) => jobsIn(dir, prefix),
  remove: async (jobId) => void run('bkill', [jobId]),
  submitSleep: async (name) => void run('bsub', ['-J', name, '-o', '/dev/null'], 'sleep 600\n'),
  cleanup: async (prefix) => {
    for (const d of dirs) {
      const ids = jobsIn(d, prefix).map((j) => j.id);
      if (ids.length) run('bkill', ids, undefined, d);
    }
  },
});
