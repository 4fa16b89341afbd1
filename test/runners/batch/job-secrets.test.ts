// The per-job secrets file: private from the start, read and deleted by the
// job script, refused clearly where it cannot be private to the job's user.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from '@jest/globals';
import { JobSecrets, JobSecretsError, defaultSecretsDir } from '../../../src/runners/batch/job-secrets.js';

const UUID = 'zzzzz-dz642-012345678901234';
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'job-secrets-'));
  dirs.push(d);
  return d;
}

describe('JobSecrets', () => {
  it('writes a 0600 file in a 0700 directory, which the script exports, deletes, then execs the command', async () => {
    const dir = join(tmp(), 'a', 'secrets');
    const s = new JobSecrets(dir);
    const token = "v2/zzzzz-gj3su-000000000000000/it's $(secret) `x`";
    const path = await s.write(UUID, { ARVADOS_API_TOKEN: token, PATH: '/usr/bin:/bin' });
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const script = JobSecrets.script(['/bin/sh', '-c', 'printf %s "$ARVADOS_API_TOKEN"'], path);
    expect(script).not.toContain('$(secret)');
    const r = spawnSync('/bin/sh', ['-s'], { input: script, encoding: 'utf8', env: {} });
    expect(r.stdout).toBe(token);
    expect(existsSync(path)).toBe(false);
    // Without the file the job fails clearly instead of running without credentials.
    const again = spawnSync('/bin/sh', ['-s'], { input: script, encoding: 'utf8', env: {} });
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/cannot read the job secrets file/);
  });

  it('tightens a directory others can read, and refuses one owned by someone else or a non-directory', async () => {
    const base = tmp();
    const loose = join(base, 'loose');
    mkdirSync(loose, { mode: 0o755 });
    chmodSync(loose, 0o755);
    await new JobSecrets(loose).write(UUID, {});
    expect(statSync(loose).mode & 0o777).toBe(0o700);
    const file = join(base, 'file');
    await new JobSecrets(base).write(UUID, {});
    rmSync(file, { force: true });
    const notDir = join(base, `${UUID}.env`);
    await expect(new JobSecrets(notDir).write(UUID, {})).rejects.toThrow(/not a directory|EEXIST|ENOTDIR/);
  });

  it('refuses a sudo job user unless running as root, and then chowns the files to that user', async () => {
    const dir = join(tmp(), 's');
    if (process.getuid?.() === 0) {
      const path = await new JobSecrets(dir, 'nobody').write(UUID, { A: 'b' });
      const nobody = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim());
      expect(statSync(path).uid).toBe(nobody);
      expect(statSync(dir).uid).toBe(nobody);
      expect(statSync(path).mode & 0o777).toBe(0o600);
    } else {
      await expect(new JobSecrets(dir, 'nobody').write(UUID, {})).rejects.toThrow(JobSecretsError);
    }
    await expect(new JobSecrets(join(tmp(), 'x'), 'no-such-user-xyz').write(UUID, {})).rejects.toThrow(/cannot look up the user/);
  });

  it('refuses bad paths, names and values, and defaults under the cache directory', async () => {
    expect(() => new JobSecrets('relative')).toThrow(/absolute/);
    const s = new JobSecrets(join(tmp(), 'v'));
    expect(() => s.path('../etc')).toThrow(/not a container UUID/);
    await expect(s.write(UUID, { 'A=B': 'x' })).rejects.toThrow(/invalid environment variable name/);
    await expect(s.write(UUID, { A: 'x\0y' })).rejects.toThrow(/NUL/);
    expect(defaultSecretsDir({ XDG_CACHE_HOME: '/c' })).toBe('/c/arvados-dispatch/job-secrets');
    expect(defaultSecretsDir({})).toMatch(/\/\.cache\/arvados-dispatch\/job-secrets$/);
    expect(readFileSync(await s.write(UUID, { A: "it's" }), 'utf8')).toBe("A='it'\\''s'\n");
  });
});

describe('JobSecrets.sweep', () => {
  it('deletes old files no job claims, and keeps recent or claimed ones', async () => {
    const dir = join(tmp(), 'sw');
    const s = new JobSecrets(dir);
    const kept = 'zzzzz-dz642-000000000000001';
    for (const u of [UUID, kept]) await s.write(u, { A: 'b' });
    expect(await s.sweep(() => false, 60_000)).toBe(0);
    expect(await s.sweep((u) => u === kept, 0, Date.now() + 1_000)).toBe(1);
    expect(existsSync(s.path(UUID))).toBe(false);
    expect(existsSync(s.path(kept))).toBe(true);
    expect(await new JobSecrets(join(dir, 'missing')).sweep(() => false)).toBe(0);
  });
});

describe('a batch runner whose secrets cannot be private to the job user', () => {
  it('refuses at startup, before any lock, with one clear reason', async () => {
    const { FakeArvados } = await import('../../../src/testing/index.js');
    const { Dispatcher } = await import('../../../src/index.js');
    const { LsfRunner } = await import('../../../src/runners/batch/lsf/index.js');
    const fake = await new FakeArvados().start();
    try {
      fake.addContainer({ priority: 1, runtime_constraints: { vcpus: 1, ram: 2 ** 26 } });
      const runner = new LsfRunner({ sudoUser: 'no-such-user-xyz', secretsDir: join(tmp(), 's'), runner: async () => ({ code: 0, signal: null, stdout: '', stderr: '' }) });
      const d = new Dispatcher({ client: fake.client(), runner, pollInterval: 20, handleSignals: false });
      const err = await d.run().then(() => undefined, (e: unknown) => e);
      // run() rejects with one line naming the cause.
      expect(String(err)).toMatch(/the runner could not start: cannot look up the user "no-such-user-xyz"/);
      expect(fake.transitions).toEqual([]);
    } finally {
      await fake.stop();
    }
  });
});
