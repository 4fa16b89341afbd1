// The `arvados-dispatch` bin of the package as a user installs it: the
// tarball of `npm pack`, installed with `npm install --omit=dev` into an
// empty project (global-setup.mjs), so a shipped import of a devDependency
// fails here as it would for a user. Every command's help, the version,
// the demo, `fake-server` with a `local` dispatcher completing a container,
// and `slurm` against the real Slurm (skipped, with a note, without one).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { rawRequest } from '../../src/testing/http.js';
import { runWithInput } from '../helpers/exec.js';
import { cancelJobsNamed, slurmUnavailable } from '../helpers/slurm.js';
import { waitFor } from '../helpers/wait.js';
import { installedBin, packed, type Packed } from './packed.js';

// Every command of the CLI. A new command (e.g. `pbs`) goes here: the first
// test fails until it does, and the help test then covers it.
const COMMANDS = ['local', 'slurm', 'lsf', 'sge', 'pbs', 'demo', 'fake-server'];

const FIXTURE = fileURLToPath(new URL('../fixtures/installed-crunch-run.mjs', import.meta.url));
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
// The installed bin runs `#!/usr/bin/env node`: the same node as the tests.
const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ''}`;

interface Proc {
  stdout: () => string;
  stderr: () => string;
  kill: (signal: NodeJS.Signals) => void;
  exited: Promise<number | null>;
}

const running: Proc[] = [];
let pkg: Packed;
let bin: string;
let home: string;
let crunchRun: string;

/** Starts the installed bin with exactly `env` (plus PATH and HOME). */
function start(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(bin, args, { cwd: pkg.app, env: { PATH, HOME: home, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const proc: Proc = {
    stdout: () => out,
    stderr: () => err,
    kill: (signal) => child.kill(signal),
    exited: new Promise((resolve) => child.on('close', (code) => resolve(code))),
  };
  running.push(proc);
  return proc;
}

async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = start(args, env);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

interface ServerInfo {
  apiHost: string;
  insecure: boolean;
  dispatcherToken: string;
  adminToken: string;
}

/** The installed `fake-server`, and a function to call it with the admin token. */
async function fakeServer(clusterId: string) {
  const server = start(['fake-server', '--cluster-id', clusterId]);
  const line = await waitFor(() => server.stdout().includes('\n') && server.stdout(), 'the fake-server JSON line', 30_000);
  const info = JSON.parse(line) as ServerInfo;
  const call = async (method: string, path: string, body?: object) =>
    (await rawRequest({ base: info.apiHost, insecure: true, method, path, token: info.adminToken, body })).json as Record<string, unknown>;
  const env = { ARVADOS_API_HOST: info.apiHost, ARVADOS_API_TOKEN: info.dispatcherToken, ARVADOS_API_HOST_INSECURE: info.insecure ? '1' : '0' };
  return { server, info, call, env };
}

beforeAll(() => {
  pkg = packed();
  bin = installedBin(pkg);
  home = mkdtempSync(join(pkg.work, 'home-'));
  // In the project, so that it loads the simulator from the installed package.
  crunchRun = join(pkg.app, 'crunch-run.mjs');
  copyFileSync(FIXTURE, crunchRun);
  chmodSync(crunchRun, 0o755);
});
afterEach(async () => {
  for (const p of running.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
});

describe('the installed arvados-dispatch bin (npm install --omit=dev)', () => {
  it('--help lists exactly the known commands', async () => {
    const r = await run(['--help']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const section = r.stdout.split('Commands:\n')[1]!.split('\n\n')[0]!;
    const listed = section.split('\n').map((l) => l.trim().split(/\s+/)[0]);
    expect(listed).toEqual(COMMANDS);
  });

  it.each(['--version', '-version'])('%s prints the version and exits 0', async (flag) => {
    expect(await run([flag])).toEqual({ code: 0, stdout: `arvados-dispatch ${VERSION}\n`, stderr: '' });
  });

  it.each(COMMANDS)('%s --help', async (command) => {
    const r = await run([command, '--help']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: arvados-dispatch ${command}\\b`));
  });

  it('was installed with its runtime dependencies only: no zod, no devDependency', async () => {
    const ls = await runWithInput('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: pkg.app, env: { ...process.env, NODE_OPTIONS: '' } });
    expect(ls.code).toBe(0);
    const names = new Set(ls.stdout.split('\n').filter(Boolean).map((p) => p.split('node_modules/').at(-1)!));
    expect(names.has('zod')).toBe(false);
    const ours = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { dependencies: object; devDependencies: object };
    for (const dep of Object.keys(ours.devDependencies)) expect([dep, names.has(dep)]).toEqual([dep, false]);
    for (const dep of Object.keys(ours.dependencies)) expect([dep, names.has(dep)]).toEqual([dep, true]);
  });

  it('demo --containers 3 runs to the end', async () => {
    const r = await run(['demo', '--containers', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/all 3 containers are final; stopping/);
  }, 120_000);

  it('fake-server, and a local dispatcher completing a container against it', async () => {
    const { server, call, env } = await fakeServer('zzzzz');
    const created = await call('POST', '/arvados/v1/containers', { container: { priority: 1, runtime_constraints: { ram: 64 * 2 ** 20, vcpus: 1 } } });
    const uuid = created.uuid as string;
    const local = start(['local', '--crunch-run-command', crunchRun, '--poll-interval', '200ms'], env);
    await waitFor(() => local.stdout().includes(`${uuid} finished: Complete (exit code 0)`), 'the container complete', 60_000);
    expect(await call('GET', `/arvados/v1/containers/${uuid}`)).toMatchObject({ state: 'Complete', exit_code: 0 });
    local.kill('SIGTERM');
    server.kill('SIGTERM');
    expect(await local.exited).toBe(0);
    expect(await server.exited).toBe(0);
    expect(local.stdout() + local.stderr()).not.toContain(env.ARVADOS_API_TOKEN);
  }, 120_000);
});

const noSlurm = await slurmUnavailable();
if (noSlurm) console.warn(`SKIPPING the installed slurm dispatcher test: ${noSlurm}. Run scripts/slurm-up.sh as root to enable it.`);

(noSlurm ? describe.skip : describe)('the installed arvados-dispatch slurm, with the real Slurm', () => {
  // Job names are container uuids: a random cluster id lets cleanup find exactly ours.
  const cluster = `i${randomBytes(3).toString('hex').slice(0, 4)}`;
  afterAll(() => cancelJobsNamed(cluster));

  it('completes a container through sbatch', async () => {
    const { server, call, env } = await fakeServer(cluster);
    const created = await call('POST', '/arvados/v1/containers', { container: { priority: 1, runtime_constraints: { ram: 64 * 2 ** 20, vcpus: 1 } } });
    const uuid = created.uuid as string;
    const out = mkdtempSync('/tmp/arvados-dispatch-installed-slurm-');
    try {
      const slurm = start(
        ['slurm', '--poll-interval', '200ms', '--squeue-interval', '200ms', '--crunch-run-command', process.execPath, `--crunch-run-arg=${crunchRun}`, '--job-output-dir', out, '--status-interval', '0'],
        env,
      );
      await waitFor(() => slurm.stdout().includes(`${uuid} finished: Complete (exit code 0)`), 'the container complete', 90_000);
      expect(slurm.stdout()).toMatch(new RegExp(`${uuid} submitted to Slurm as job \\d+`));
      expect(await call('GET', `/arvados/v1/containers/${uuid}`)).toMatchObject({ state: 'Complete', exit_code: 0 });
      slurm.kill('SIGTERM');
      server.kill('SIGTERM');
      expect(await slurm.exited).toBe(0);
      expect(slurm.stdout() + slurm.stderr()).not.toContain(env.ARVADOS_API_TOKEN);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 150_000);
});
