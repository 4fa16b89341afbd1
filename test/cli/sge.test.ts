// `arvados-dispatch sge` as a process: against FakeArvados and the real
// Grid Engine (scripts/sge-up.sh) running the crunch-run simulator on this
// machine; bad flags and a host without Grid Engine need no Grid Engine.
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import { parseQstatXml } from '../../src/runners/batch/sge/qstat.js';
import { built, runCli, spawnCli, type Cli } from '../helpers/cli.js';
import { execFileP } from '../helpers/exec.js';
import { waitFor } from '../helpers/wait.js';
import { sgeEnv, sgeUnavailable } from '../runners/sge/sge-env.js';

const STUB = fileURLToPath(new URL('../fixtures/slurm-crunch-run.mjs', import.meta.url));
const MiB = 2 ** 20;

const unavailable = built ? await sgeUnavailable() : 'dist/ is not built (npm test builds it)';
if (unavailable) console.warn(`SKIPPING the arvados-dispatch sge CLI tests with Grid Engine: ${unavailable}. Run scripts/sge-up.sh as root to enable them.`);

// Job names of this file start with a random cluster id, so cleanup finds exactly ours.
const CLUSTER = `g${randomBytes(3).toString('hex').slice(0, 4)}`;
let home: string;
const children: Cli[] = [];

// Asynchronous, so that waiting on it never blocks the dispatcher under test.
async function ourJobs(): Promise<Array<{ id: string; name: string }>> {
  try {
    const { stdout } = await execFileP('qstat', ['-u', '*', '-xml'], { encoding: 'utf8', env: sgeEnv() });
    return parseQstatXml(stdout).filter((j) => j.name.startsWith(CLUSTER));
  } catch {
    return [];
  }
}

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'arvados-dispatch-home-'));
});
afterEach(() => {
  for (const c of children.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
});
afterAll(async () => {
  const ids = (await ourJobs()).map((j) => j.id);
  if (ids.length) await execFileP('qdel', ids, { env: sgeEnv() }).catch(() => {});
  rmSync(home, { recursive: true, force: true });
});

(built ? describe : describe.skip)('arvados-dispatch sge: command line', () => {
  it('rejects bad flags and templates with exit 2 and one line', async () => {
    for (const [args, message] of [
      [['sge', '--qsub-env', 'NOT AN ASSIGNMENT'], '--qsub-env: "NOT AN ASSIGNMENT" is not NAME=VALUE'],
      [['sge', '--qstat-interval', 'soon'], '--qstat-interval:'],
      [['sge', '--qsub-arg=-l', '--qsub-arg=h_vmem=%XM'], 'unknown substitution %X in Grid Engine argument templates'],
      [['sge', '--vanish-grace-misses', '0'], '--vanish-grace-misses:'],
    ] as const) {
      const r = await runCli([...args], { HOME: home, PATH: process.env.PATH ?? '' });
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(message);
    }
  });

  it('says so in one line when this host has no Grid Engine client (exit 1)', async () => {
    const r = await runCli(['sge'], { HOME: home, PATH: '/nonexistent' });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('arvados-dispatch: Grid Engine command "qsub" was not found on PATH: is this a Grid Engine submit host?');
  });

  it('documents its flags', async () => {
    const r = await runCli(['sge', '--help'], { HOME: home });
    expect(r.code).toBe(0);
    for (const flag of ['--poll-interval', '--qstat-interval', '--crunch-run-command', '--crunch-run-arg', '--qsub-arg', '--qsub-gpu-arg', '--qsub-env', '--priority-spread', '--vanish-grace', '--submit-rate', '--pending-grace']) {
      expect(r.stdout).toContain(flag);
    }
  });
});

(unavailable ? describe.skip : describe)('arvados-dispatch sge with real Grid Engine', () => {
  let fake: FakeArvados;
  beforeAll(async () => {
    fake = await new FakeArvados({ clusterId: CLUSTER }).start();
  });
  afterAll(async () => {
    await fake.stop();
  });

  it('runs containers through qsub, and a SIGTERM leaves running jobs for the next dispatcher (exit 0)', async () => {
    const small = { runtime_constraints: { ram: 64 * MiB, vcpus: 1 } };
    const quick = fake.addContainer({ ...small, environment: { STUB_MODE: 'complete', STUB_RUN_MS: '200' } });
    const long = fake.addContainer({ ...small, environment: { STUB_MODE: 'hang' } });
    const cli = spawnCli(
      ['sge', '--poll-interval', '200ms', '--qstat-interval', '200ms', '--crunch-run-command', process.execPath, `--crunch-run-arg=${STUB}`, '--status-interval', '0'],
      { HOME: home, ...fake.env() },
    );
    children.push(cli);
    await waitFor(() => cli.stdout().includes(`${quick.uuid} finished: Complete (exit code 0)`), 'the quick container complete', 60_000);
    await waitFor(() => fake.container(long.uuid)?.state === 'Running', 'the long one running', 60_000);
    // crunch-run sets Complete before it exits; Grid Engine forgets the job a moment later.
    await waitFor(async () => !(await ourJobs()).some((j) => j.name === quick.uuid), 'the quick job out of qstat', 60_000);
    cli.child.kill('SIGTERM');
    const { code } = await cli.exited;
    expect(code).toBe(0);
    const stdout = cli.stdout();
    expect(stdout).toMatch(new RegExp(`${quick.uuid} submitted to Grid Engine as job \\d+`));
    expect(stdout).toMatch(/leaving \d+ Grid Engine job\(s\) in the queue for the next dispatcher/);
    expect(stdout + cli.stderr()).not.toContain(fake.rootToken.token);
    expect((await ourJobs()).map((j) => j.name)).toEqual([long.uuid]);
    expect(fake.container(long.uuid)?.state).toBe('Running');
  }, 120_000);
});
