// `arvados-dispatch slurm` as a process: against FakeArvados and the real
// Slurm (scripts/slurm-up.sh) with the stub crunch-run that the Slurm jobs
// run on this machine; bad flags and a host without Slurm need no Slurm.
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import { built, runCli, spawnCli, type Cli } from '../helpers/cli.js';
import { execFileP } from '../helpers/exec.js';
import { cancelJobsNamed, slurmUnavailable } from '../helpers/slurm.js';
import { waitFor } from '../helpers/wait.js';

const STUB = fileURLToPath(new URL('../fixtures/slurm-crunch-run.mjs', import.meta.url));
const MiB = 2 ** 20;

const unavailable = built ? await slurmUnavailable() : 'dist/ is not built (npm test builds it)';
if (unavailable) console.warn(`SKIPPING the arvados-dispatch slurm CLI tests with Slurm: ${unavailable}. Run scripts/slurm-up.sh as root to enable them.`);

// Job names of this file start with a random cluster id, so cleanup finds exactly ours.
const CLUSTER = `c${randomBytes(3).toString('hex').slice(0, 4)}`;
let home: string;
const children: Cli[] = [];

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'arvados-dispatch-home-'));
});
afterEach(() => {
  for (const c of children.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
});
afterAll(async () => {
  await cancelJobsNamed(CLUSTER);
  rmSync(home, { recursive: true, force: true });
});

(built ? describe : describe.skip)('arvados-dispatch slurm: command line', () => {
  it('rejects bad flags with exit 2 and one line', async () => {
    for (const [args, message] of [
      [['slurm', '--sbatch-env', 'NOT AN ASSIGNMENT'], '--sbatch-env: "NOT AN ASSIGNMENT" is not NAME=VALUE'],
      [['slurm', '--squeue-interval', 'soon'], '--squeue-interval:'],
      [['slurm', '--job-output-dir', 'relative/dir'], 'jobOutputDir must be an absolute path'],
      [['slurm', '--vanish-grace-misses', '0'], '--vanish-grace-misses: "0" is not a whole number >= 1'],
      [['slurm', '--submit-rate', '20'], '--submit-rate: "20" is not a rate N/PERIOD'],
      [['slurm', '--sbatch-arg=--comment=%Z'], 'unknown substitution %Z in Slurm argument templates'],
      [['slurm', '--sbatch-gpu-arg=--gres=gpu:%Q'], 'unknown substitution %Q in Slurm GPU argument templates'],
    ] as const) {
      const r = await runCli([...args], { HOME: home, PATH: process.env.PATH ?? '' });
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(message);
    }
  });

  it('says so when this host has no Slurm client (exit 2, before any lock)', async () => {
    const r = await runCli(['slurm'], { HOME: home, PATH: '/nonexistent' });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('arvados-dispatch: Slurm command "sbatch" was not found on PATH: is this a Slurm submit host?');
  });

  it('documents its flags', async () => {
    const r = await runCli(['slurm', '--help'], { HOME: home });
    expect(r.code).toBe(0);
    for (const flag of ['--poll-interval', '--squeue-interval', '--squeue-interval-max', '--squeue-all', '--submit-rate', '--pending-grace', '--no-accounting', '--crunch-run-command', '--sbatch-arg', '--priority-spread', '--vanish-grace', '--min-retry-period']) {
      expect(r.stdout).toContain(flag);
    }
  });
});

(unavailable ? describe.skip : describe)('arvados-dispatch slurm with real Slurm', () => {
  it('refuses a bad template with exit 2 and one line before locking anything', async () => {
    const f = await new FakeArvados({ clusterId: CLUSTER }).start();
    try {
      const c = f.addContainer({ runtime_constraints: { ram: 64 * MiB, vcpus: 1 } });
      const r = await runCli(['slurm', '--sbatch-arg=--comment=%Z', '--poll-interval', '100ms'], { HOME: home, ...f.env() });
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(f.transitions.filter((t) => t.uuid === c.uuid)).toEqual([]);
    } finally {
      await f.stop();
    }
  });

  let fake: FakeArvados;
  let out: string;
  beforeAll(async () => {
    fake = await new FakeArvados({ clusterId: CLUSTER }).start();
    out = mkdtempSync('/tmp/arvados-dispatch-cli-slurm-');
  });
  afterAll(async () => {
    await fake.stop();
    rmSync(out, { recursive: true, force: true });
  });

  it('runs containers through sbatch, and a SIGTERM leaves running jobs for the next dispatcher (exit 0)', async () => {
    const small = { runtime_constraints: { ram: 64 * MiB, vcpus: 1 } };
    const quick = fake.addContainer({ ...small, environment: { STUB_MODE: 'complete', STUB_RUN_MS: '200' } });
    const long = fake.addContainer({ ...small, environment: { STUB_MODE: 'hang' } });
    const cli = spawnCli(
      [
        'slurm',
        '--poll-interval', '200ms',
        '--squeue-interval', '200ms',
        '--crunch-run-command', process.execPath,
        `--crunch-run-arg=${STUB}`,
        '--job-output-dir', out,
        '--status-interval', '0',
      ],
      { HOME: home, ...fake.env() },
    );
    children.push(cli);
    await waitFor(() => cli.stdout().includes(`${quick.uuid} finished: Complete (exit code 0)`), 'the quick container complete', 60_000);
    await waitFor(() => fake.container(long.uuid)?.state === 'Running', 'the long one running', 60_000);
    cli.child.kill('SIGTERM');
    const { code } = await cli.exited;
    expect(code).toBe(0);
    const stdout = cli.stdout();
    expect(stdout).toMatch(new RegExp(`${quick.uuid} submitted to Slurm as job \\d+`));
    expect(stdout).toMatch(/received SIGTERM: stopping; leaving \d+ Slurm job\(s\) in the queue for the next dispatcher/);
    expect(stdout.trim().split('\n').at(-1)).toMatch(/queued \d+, running \d+, done 1 \(complete 1, cancelled 0\)$/);
    expect(stdout + cli.stderr()).not.toContain(fake.rootToken.token);
    // The long container's job is still there, and the container still Running.
    const q = await execFileP('squeue', ['--noheader', '--format=%j'], { encoding: 'utf8' });
    expect(q.stdout.split('\n')).toContain(long.uuid);
    expect(fake.container(long.uuid)?.state).toBe('Running');
  }, 120_000);
});
