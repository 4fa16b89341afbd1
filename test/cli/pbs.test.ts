// `arvados-dispatch pbs` as a process: against FakeArvados and the PBS
// stand-in's commands (test/runners/pbs/bin, first on PATH; OpenPBS 23.06's
// formats), which run the crunch-run simulator on this machine. Bad flags and
// a host without PBS need neither. Its help is tested in-process (run.test.ts).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import { built, runCli, spawnCli, type Cli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { pbsCommand } from '../runners/pbs/bin/pbs-stub.mjs';

const STUB = fileURLToPath(new URL('../fixtures/slurm-crunch-run.mjs', import.meta.url));
const BIN = fileURLToPath(new URL('../runners/pbs/bin', import.meta.url));
const MiB = 2 ** 20;
let home: string;
const children: Cli[] = [];

if (!built) console.warn('SKIPPING the arvados-dispatch pbs CLI tests: dist/ is not built (npm test builds it)');

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'arvados-dispatch-home-'));
});
afterEach(() => {
  for (const c of children.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
});
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
});

(built ? describe : describe.skip)('arvados-dispatch pbs', () => {
  const PATH = `${BIN}:${process.env.PATH ?? ''}`;

  it('refuses a bad template before anything else (exit 2), and a host without qsub (exit 1)', async () => {
    const bad = await runCli(['pbs', '--qsub-arg=-l', '--qsub-arg=select=1:ncpus=%Z'], { HOME: home, PATH });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/%Z/);
    const none = await runCli(['pbs'], { HOME: home, PATH: '/nonexistent' });
    expect(none.code).toBe(1);
    expect(none.stderr.trim()).toBe('arvados-dispatch: PBS command "qsub" was not found on PATH: is this a PBS submission host?');
  });

  describe('with the stand-in PBS', () => {
    let fake: FakeArvados;
    let table: string;
    beforeAll(async () => {
      fake = await new FakeArvados().start();
      table = mkdtempSync('/tmp/arvados-dispatch-cli-pbs-');
    });
    afterAll(async () => {
      await fake.stop();
      rmSync(table, { recursive: true, force: true });
    });

    it('runs containers through qsub, and a SIGTERM leaves running jobs for the next dispatcher (exit 0)', async () => {
      const small = { runtime_constraints: { ram: 64 * MiB, vcpus: 1 } };
      const quick = fake.addContainer({ ...small, environment: { STUB_MODE: 'complete', STUB_RUN_MS: '200' } });
      const long = fake.addContainer({ ...small, environment: { STUB_MODE: 'hang' } });
      const cli = spawnCli(
        ['pbs', '--poll-interval', '200ms', '--qstat-interval', '200ms', '--crunch-run-command', process.execPath, `--crunch-run-arg=${STUB}`, '--status-interval', '0', '--job-secrets-dir', join(table, 'secrets')],
        { HOME: home, PATH, PBS_STUB_DIR: table, ...fake.env() },
      );
      children.push(cli);
      await waitFor(() => cli.stdout().includes(`${quick.uuid} finished: Complete (exit code 0)`), 'the quick container complete', 60_000);
      await waitFor(() => fake.container(long.uuid)?.state === 'Running', 'the long one running', 60_000);
      cli.child.kill('SIGTERM');
      const { code } = await cli.exited;
      expect(code).toBe(0);
      const stdout = cli.stdout();
      expect(stdout).toMatch(new RegExp(`${quick.uuid} submitted to PBS as job \\d+\\.stub-server`));
      expect(stdout).toMatch(/leaving \d+ PBS job\(s\) in the queue for the next dispatcher/);
      expect(stdout + cli.stderr()).not.toContain(fake.rootToken.token);
      const calls = readFileSync(join(table, 'calls.log'), 'utf8').split('\n').filter((l) => l.includes('"command":"qsub"'));
      expect(calls).toHaveLength(2);
      expect(calls.join('\n')).not.toContain(fake.rootToken.token);
      expect(calls.join('\n')).not.toContain('"-V"');
      expect(fake.container(long.uuid)?.state).toBe('Running');
      // Leave nothing running behind.
      const doc = JSON.parse(pbsCommand(table, 'qstat', ['-f', '-F', 'json']).stdout) as { Jobs?: Record<string, unknown> };
      const ids = Object.keys(doc.Jobs ?? {});
      if (ids.length) pbsCommand(table, 'qdel', ids);
    }, 120_000);
  });
});
