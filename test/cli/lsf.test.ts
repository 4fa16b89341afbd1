// `arvados-dispatch lsf` as a process: against FakeArvados and the LSF stub
// commands (test/runners/lsf/bin, first on PATH), which run the crunch-run
// simulator on this machine; bad flags and a host without LSF need neither
// (bad flags and the help run in-process).
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { stringify } from 'yaml';
import { gatewayAuthSecret } from '../../src/runners/crunch-run.js';
import { FakeArvados } from '../../src/testing/index.js';
import { built, runCli, spawnCli, type Cli } from '../helpers/cli.js';
import { execFileP } from '../helpers/exec.js';
import { runInProcess } from '../helpers/in-process.js';
import { waitFor } from '../helpers/wait.js';

const STUB = fileURLToPath(new URL('../fixtures/slurm-crunch-run.mjs', import.meta.url));
const BIN = fileURLToPath(new URL('../runners/lsf/bin', import.meta.url));
const MiB = 2 ** 20;
let home: string;
const children: Cli[] = [];

if (!built) console.warn('SKIPPING the arvados-dispatch lsf CLI tests: dist/ is not built (npm test builds it)');

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'arvados-dispatch-home-'));
});
afterEach(() => {
  for (const c of children.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
});
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
});

(built ? describe : describe.skip)('arvados-dispatch lsf', () => {
  const PATH = `${BIN}:${process.env.PATH ?? ''}`;

  it('rejects bad flags and templates with exit 2 and one line', async () => {
    // A flag is checked as it is read, in-process; the templates and the sudo
    // user once bsub is found on the PATH, which a command reads from the
    // process's environment: those cases are a process.
    for (const [args, message, needsPath] of [
      [['lsf', '--bsub-env', 'NOT AN ASSIGNMENT'], '--bsub-env: "NOT AN ASSIGNMENT" is not NAME=VALUE', false],
      [['lsf', '--bjobs-interval', 'soon'], '--bjobs-interval:', false],
      [['lsf', '--bsub-arg=-J', '--bsub-arg=%U', '--bsub-arg=-q', '--bsub-arg=%P'], 'unknown substitution %P in LSF argument templates', true],
      [['lsf', '--bsub-sudo-user', 'not a user'], 'not a user name', true],
      [['lsf', '--submit-rate', 'fast'], '--submit-rate:', false],
    ] as const) {
      const r = await (needsPath ? runCli : runInProcess)([...args], { HOME: home, PATH });
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toContain(message);
    }
  });

  it('warns when a template uses %I without InstanceTypes (a literal %%I does not count)', async () => {
    const r = await runCli(['lsf', '--bsub-arg=-R', '--bsub-arg=select[type==%I]'], { HOME: home, PATH });
    expect(r.stderr).toContain('warning: a --bsub-arg template uses %I, but the cluster config has no InstanceTypes: %I expands to ""');
    const literal = await runCli(['lsf', '--bsub-arg=-R', '--bsub-arg=100%%I'], { HOME: home, PATH });
    expect(literal.stderr).not.toContain('uses %I');
  });

  it('says so in one line when this host has no LSF client (exit 1)', async () => {
    const r = await runCli(['lsf'], { HOME: home, PATH: '/nonexistent' });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('arvados-dispatch: LSF command "bsub" was not found on PATH: is this an LSF submission host?');
  });

  it('documents its flags', async () => {
    const r = await runInProcess(['lsf', '--help'], { HOME: home });
    expect(r.code).toBe(0);
    for (const flag of ['--poll-interval', '--bjobs-interval', '--crunch-run-command', '--crunch-run-arg', '--bsub-arg', '--bsub-gpu-arg', '--bsub-sudo-user', '--max-run-time-overhead', '--max-run-time-default', '--bsub-env', '--priority-spread', '--vanish-grace', '--submit-rate']) {
      expect(r.stdout).toContain(flag);
    }
  });

  describe('with the stub LSF', () => {
    let fake: FakeArvados;
    let table: string;
    beforeAll(async () => {
      fake = await new FakeArvados().start();
      table = mkdtempSync('/tmp/arvados-dispatch-cli-lsf-');
    });
    afterAll(async () => {
      await fake.stop();
      rmSync(table, { recursive: true, force: true });
    });

    it('a BsubSudoUser this host does not know stops it before any lock, with exit 2 and one line', async () => {
      const c = fake.addContainer({ runtime_constraints: { ram: 64 * MiB, vcpus: 1 } });
      const r = await runCli(['lsf', '--bsub-sudo-user', 'no-such-user-xyz', '--status-interval', '0'], { HOME: home, PATH, LSF_STUB_DIR: table, ...fake.env() });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/the runner could not start: cannot look up the user "no-such-user-xyz"/);
      expect(fake.container(c.uuid)?.state).toBe('Queued');
      // Out of the way of the next test, which counts its submissions.
      fake.setPriority(c.uuid, 0);
    });

    it('runs containers through bsub, and a SIGTERM leaves running jobs for the next dispatcher (exit 0)', async () => {
      const small = { runtime_constraints: { ram: 64 * MiB, vcpus: 1 } };
      const quick = fake.addContainer({ ...small, environment: { STUB_MODE: 'complete', STUB_RUN_MS: '200' } });
      const long = fake.addContainer({ ...small, environment: { STUB_MODE: 'hang' } });
      // Through (the stub's) sudo, as this user: Arvados' default BsubSudoUser "crunch" may not exist here, and
      // jobs of another user need the dispatcher to be root to give them their secrets file.
      const me = userInfo().username;
      const cli = spawnCli(
        ['lsf', '--poll-interval', '200ms', '--bjobs-interval', '200ms', '--crunch-run-command', process.execPath, `--crunch-run-arg=${STUB}`, '--bsub-sudo-user', me, '--status-interval', '0'],
        { HOME: home, PATH, LSF_STUB_DIR: table, ...fake.env() },
      );
      children.push(cli);
      // A dispatcher that exits (e.g. the runner could not start) fails the wait at once, saying why.
      const whileRunning = (check: () => boolean) => (): boolean => {
        if (cli.child.exitCode !== null) throw new Error(`the dispatcher exited (${cli.child.exitCode}): ${cli.stderr()}`);
        return check();
      };
      await waitFor(whileRunning(() => cli.stdout().includes(`${quick.uuid} finished: Complete (exit code 0)`)), 'the quick container complete', 60_000);
      await waitFor(whileRunning(() => fake.container(long.uuid)?.state === 'Running'), 'the long one running', 60_000);
      cli.child.kill('SIGTERM');
      const { code } = await cli.exited;
      expect(code).toBe(0);
      const stdout = cli.stdout();
      expect(stdout).toContain(`sudo -E -u ${me} bsub `);
      expect(stdout).toMatch(new RegExp(`${quick.uuid} submitted to LSF as job \\d+`));
      expect(stdout).toMatch(/leaving \d+ LSF job\(s\) in the queue for the next dispatcher/);
      expect(stdout + cli.stderr()).not.toContain(fake.rootToken.token);
      const bsubs = readFileSync(join(table, 'calls.log'), 'utf8').split('\n').filter((l) => l.includes('"command":"bsub"'));
      expect(bsubs).toHaveLength(2);
      expect(bsubs.join('\n')).not.toContain(fake.rootToken.token);
      expect(fake.container(long.uuid)?.state).toBe('Running');
      // Leave nothing running behind.
      const stubEnv = { ...process.env, LSF_STUB_DIR: table };
      const left = JSON.parse((await execFileP(join(BIN, 'bjobs'), ['-u', 'all', '-o', 'jobid', '-json'], { encoding: 'utf8', env: stubEnv })).stdout) as { RECORDS: Array<{ JOBID: string }> };
      if (left.RECORDS.length) await execFileP(join(BIN, 'bkill'), left.RECORDS.map((r) => r.JOBID), { env: stubEnv }).catch(() => {});
    }, 120_000);

    it("from a cluster config: the job's GatewayAuthSecret is keyed by the config's SystemRootToken", async () => {
      const dir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-lsf-secret-'));
      try {
        // A crunch-run that writes the GatewayAuthSecret it got to <dir>/<uuid>.secret.
        const crunchRun = join(dir, 'crunch-run');
        writeFileSync(crunchRun, `#!/bin/sh\nfor a; do u=$a; done\nprintf %s "$GatewayAuthSecret" > '${dir}'/"$u".secret\n`);
        chmodSync(crunchRun, 0o755);
        const config = join(dir, 'config.yml');
        writeFileSync(
          config,
          stringify({
            Clusters: {
              zzzzz: {
                SystemRootToken: fake.rootToken.token,
                Services: { Controller: { ExternalURL: fake.url } },
                TLS: { Insecure: true },
                // Given empty: no sudo (Arvados' default would be "crunch").
                Containers: { CrunchRunCommand: crunchRun, LSF: { BsubSudoUser: '' }, CloudVMs: { PollInterval: '200ms' } },
              },
            },
          }),
        );
        const x = fake.addContainer({ runtime_constraints: { ram: 64 * MiB, vcpus: 1 } });
        // No ARVADOS_* variables: the API and the token come from the config.
        const cli = spawnCli(['lsf', '--config', config, '--bjobs-interval', '200ms', '--status-interval', '0'], { HOME: home, PATH, LSF_STUB_DIR: table });
        children.push(cli);
        const secret = join(dir, `${x.uuid}.secret`);
        await waitFor(() => existsSync(secret) && readFileSync(secret, 'utf8').length > 0, 'the job ran', 60_000);
        expect(readFileSync(secret, 'utf8')).toBe(gatewayAuthSecret(fake.rootToken.token, x.uuid));
        cli.child.kill('SIGTERM');
        expect((await cli.exited).code).toBe(0);
        expect(cli.stderr()).toBe('');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 120_000);
  });
});
