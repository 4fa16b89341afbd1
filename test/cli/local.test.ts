// The built `arvados-dispatch` binary as a process: `local` against
// FakeArvados with a stub crunch-run, signals, exit statuses and messages;
// help, version and bad command lines in-process. The process tests need
// `npm run build` first (`npm test` does it).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import { alive, makeCrunchRunStub, type CrunchRunStub } from '../fixtures/crunch-run-stub.js';
import { waitFor } from '../helpers/wait.js';
import { built, spawnCli, type Cli } from '../helpers/cli.js';
import { runInProcess } from '../helpers/in-process.js';

if (!built) console.warn('dist/ is not built: run `npm run build` (npm test does) for the CLI tests');
const describeBuilt = built ? describe : describe.skip;

const running: ChildProcess[] = [];
let home: string;
let fake: FakeArvados | undefined;
let stub: CrunchRunStub | undefined;

beforeEach(() => {
  // An empty HOME, so no settings.conf of the machine running the tests is read.
  home = mkdtempSync(join(tmpdir(), 'arvados-dispatch-home-'));
});

afterEach(async () => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // Children a forced exit left behind.
  for (const r of stub?.records() ?? []) if (alive(r.pid)) process.kill(r.pid, 'SIGKILL');
  await fake?.stop();
  fake = undefined;
  stub?.remove();
  stub = undefined;
  rmSync(home, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string> = {}): Cli {
  const c = spawnCli(args, { HOME: home, ...env });
  running.push(c.child);
  return c;
}

/** Runs to completion. */
async function cliRun(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = cli(args, env);
  const { code } = await c.exited;
  return { code, stdout: c.stdout(), stderr: c.stderr() };
}

async function startFake(): Promise<FakeArvados> {
  fake = await new FakeArvados().start();
  return fake;
}

/** `local` with short intervals and the stub crunch-run in `mode`. */
function local(f: FakeArvados, mode: string, extra: string[] = [], env: Record<string, string> = f.env()): Cli {
  stub = makeCrunchRunStub();
  return cli(
    [
      'local',
      '--poll-interval', '50ms',
      '--crunch-run-command', stub.command,
      `--crunch-run-arg=--mode=${mode}`,
      `--crunch-run-arg=${stub.recordArg}`,
      '--vcpus', '4',
      '--ram', '8GiB',
      ...extra,
    ],
    env,
  );
}

const small = { priority: 1, runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 } };

/** stderr is exactly one `arvados-dispatch: ...` line. */
function oneErrorLine(stderr: string): string {
  const lines = stderr.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^arvados-dispatch: /);
  return lines[0];
}

// In-process (run(argv, io)): these end before anything starts; the spawned
// tests below keep checking the process.
describe('arvados-dispatch: help, version, command line', () => {
  it('prints the version from package.json, for --version and the Go spelling -version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-version']) {
      const r = await runInProcess([flag]);
      expect(r).toEqual({ code: 0, stdout: `arvados-dispatch ${pkg.version}\n`, stderr: '' });
    }
  });

  it('prints the overall help and each command help', async () => {
    const all = await runInProcess(['--help']);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/Usage: arvados-dispatch <command>/);
    expect(all.stdout).toMatch(/^ {2}local {3}run queued containers as crunch-run processes/m);
    expect(all.stdout).toMatch(/^ {2}slurm {3}submit queued containers to Slurm/m);
    expect(all.stdout).toMatch(/^ {2}demo {4}/m);
    const l = await runInProcess(['local', '--help']);
    expect(l.code).toBe(0);
    for (const flag of ['--poll-interval DURATION', '--crunch-run-command CMD', '--crunch-run-arg ARG', '--min-retry-period', '--batch-size N',
      '--runtime-engine ENGINE', '--vcpus N', '--ram SIZE', '--reserve-extra-ram SIZE', '--lock-concurrency N', '--stop-grace DURATION',
      '--status-interval DURATION', '--json', '--config PATH', '--max-jobs N', '--listen HOST:PORT', '--management-token-file PATH',
      '--env NAME=VALUE', '--env-pass NAME', '--no-events']) {
      expect(l.stdout).toContain(flag);
    }
    // Ours in the table; the Go spellings only mentioned in a note.
    expect(l.stdout).not.toMatch(/^\s+-poll-interval/m);
    expect(l.stdout).toMatch(/The Go dispatchers' -config, -poll-interval=SECONDS and -crunch-run-command\nare accepted too/);
    expect(l.stdout).toMatch(/Exit status: 0 after a clean stop, 1 if it cannot start or run,\n2 on a bad command line/);
    expect((await runInProcess(['help', 'demo'])).stdout).toMatch(/Usage: arvados-dispatch demo \[--containers N\]/);
  });

  it.each([
    [['local', '--bogus'], "unknown option '--bogus'; see 'arvados-dispatch local --help'"],
    [['local', '--poll-interval', '10'], '--poll-interval: invalid duration "10": missing unit'],
    [['local', '--poll-interval', 'soon'], '--poll-interval: invalid duration "soon"'],
    [['local', 'zzzzz-dz642-000000000000000'], "unexpected argument 'zzzzz-dz642-000000000000000'"],
    [['local', '--ram', '8XB'], '--ram: invalid size "8XB"'],
    [['local', '--vcpus', '0'], '--vcpus: "0" is not a whole number >= 1'],
    [['local', '--crunch-run-arg', '--foo'], "option '--crunch-run-arg' needs a value; write --crunch-run-arg=VALUE for a value starting with '-'"],
    [['demo', '--containers', '0'], '--containers: "0" is not a whole number >= 1'],
    [['frobnicate'], "unknown command 'frobnicate'"],
    [['--frobnicate'], "unknown option '--frobnicate'"],
  ])('%j: exit 2 with one line', async (args, message) => {
    const r = await runInProcess(args);
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toContain(message);
    expect(r.stdout).toBe('');
  });

  it('without a command: usage on stderr, exit 2', async () => {
    const r = await runInProcess([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^Usage: arvados-dispatch <command>/);
  });

});

describeBuilt('arvados-dispatch local: cannot start (exit 1)', () => {
  it('names the missing credentials', async () => {
    stub = makeCrunchRunStub();
    const r = await cliRun(['local', '--crunch-run-command', stub.command]);
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toBe(
      'arvados-dispatch: ARVADOS_API_HOST and ARVADOS_API_TOKEN are not set (in the environment or $HOME/.config/arvados/settings.conf)',
    );
    const onlyHost = await cliRun(['local', '--crunch-run-command', stub.command], { ARVADOS_API_HOST: '127.0.0.1:1' });
    expect(oneErrorLine(onlyHost.stderr)).toMatch(/ARVADOS_API_TOKEN is not set/);
  });

  it('fails fast with exit 2 when the crunch-run command is missing', async () => {
    const f = await startFake();
    const r = await cliRun(['local', '--crunch-run-command', '/nonexistent/crunch-run'], f.env());
    expect(r.code).toBe(2);
    expect(oneErrorLine(r.stderr)).toBe(
      'arvados-dispatch: crunch-run command "/nonexistent/crunch-run" does not exist (set it with --crunch-run-command)',
    );
    const onPath = await cliRun(['local'], f.env());
    expect(oneErrorLine(onPath.stderr)).toBe('arvados-dispatch: crunch-run command "crunch-run" was not found on PATH (set it with --crunch-run-command)');
    expect(f.count()).toBe(0);
  });

  it('says so when the token is rejected, without printing it', async () => {
    const f = await startFake();
    stub = makeCrunchRunStub();
    const r = await cliRun(['local', '--crunch-run-command', stub.command], f.env('not-a-valid-token-4711'));
    expect(r.code).toBe(1);
    const line = oneErrorLine(r.stderr);
    expect(line).toMatch(/^arvados-dispatch: error getting my token UUID \(the API token was rejected\): .*401/);
    expect(r.stderr + r.stdout).not.toContain('not-a-valid-token-4711');
  });

  it('points at ARVADOS_API_HOST_INSECURE when the certificate is not trusted', async () => {
    const f = await startFake();
    stub = makeCrunchRunStub();
    const r = await cliRun(['local', '--crunch-run-command', stub.command], { ...f.env(), ARVADOS_API_HOST_INSECURE: '0' });
    expect(r.code).toBe(1);
    expect(oneErrorLine(r.stderr)).toMatch(/TLS certificate of 127\.0\.0\.1:\d+ is not trusted .*set ARVADOS_API_HOST_INSECURE=1/);
    expect(r.stderr).not.toContain(f.rootToken.token);
  });
});

describeBuilt('arvados-dispatch local: dispatching', () => {
  it('runs containers to Complete, prints one line per event, and exits 0 on SIGTERM', async () => {
    const f = await startFake();
    const cs = f.addContainers(3, () => small);
    const c = local(f, 'complete', ['--status-interval', '100ms']);
    await waitFor(() => cs.every((x) => c.stdout().includes(`${x.uuid} finished: Complete (exit code 0)`)), 'three finished lines');
    await waitFor(() => c.stdout().includes('done 3 (complete 3, cancelled 0)'), 'a status line with 3 done');
    expect(cs.map((x) => f.container(x.uuid)?.state)).toEqual(['Complete', 'Complete', 'Complete']);
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    const out = c.stdout();
    expect(out).toMatch(/^\d\d:\d\d:\d\d arvados-dispatch local: 4 vCPUs, 8 GiB RAM, no GPUs; crunch-run .*crunch-run; polling 127\.0\.0\.1:\d+ every 50ms$/m);
    expect(out).toMatch(/dispatching as token zzzzz-gj3su-000000000000000 on 127\.0\.0\.1:\d+/);
    for (const x of cs) {
      expect(out).toContain(`${x.uuid} locked (priority 1)`);
      expect(out).toMatch(new RegExp(`${x.uuid} started crunch-run, pid \\d+ \\(1 vCPU, 614 MiB RAM\\)`));
      expect(out).toContain(`${x.uuid} | fake crunch-run: ${x.uuid} is Running`);
    }
    expect(out).toMatch(/received SIGTERM: stopping; no crunch-run is running \(SIGTERM again exits at once\)/);
    // The last line is the final status.
    expect(out.trim().split('\n').at(-1)).toMatch(/^\d\d:\d\d:\d\d queued 0, running 0, done 3 \(complete 3, cancelled 0\)$/);
    // Credentials from the environment: the one warning is that no SystemRootToken is known.
    expect(c.stderr()).toMatch(/^\d\d:\d\d:\d\d warning: no SystemRootToken is known \(set it in the cluster config\): .*\n$/);
    expect(out).not.toContain(f.rootToken.token);
  });

  it('priority 0: crunch-run gets SIGINT and cancels the container', async () => {
    const f = await startFake();
    const x = f.addContainer(small);
    const c = local(f, 'hang');
    await waitFor(() => f.container(x.uuid)?.state === 'Running', 'Running');
    f.setPriority(x.uuid, 0);
    await waitFor(() => c.stdout().includes(`${x.uuid} finished: Cancelled`), 'finished line');
    expect(c.stdout()).toMatch(new RegExp(`${x.uuid} sent SIGINT to crunch-run pid \\d+: priority is 0 \\(cancel requested\\)`));
    expect(stub!.signals(x.uuid)).toEqual(['SIGINT']);
    expect(f.container(x.uuid)?.state).toBe('Cancelled');
    c.child.kill('SIGINT');
    expect((await c.exited).code).toBe(0);
  });

  it('SIGTERM: every crunch-run gets SIGINT and is reaped before exit 0; the token is only in their environment', async () => {
    const f = await startFake();
    const cs = f.addContainers(3, () => small);
    const c = local(f, 'hang', ['--runtime-engine', 'docker']);
    await waitFor(() => cs.every((x) => f.container(x.uuid)?.state === 'Running'), 'all Running');
    const records = cs.map((x) => stub!.record(x.uuid)!);
    expect(records.every((r) => alive(r.pid))).toBe(true);
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    expect(records.filter((r) => alive(r.pid))).toEqual([]);
    expect(cs.map((x) => f.container(x.uuid)?.state)).toEqual(['Cancelled', 'Cancelled', 'Cancelled']);
    for (const x of cs) expect(stub!.signals(x.uuid)).toEqual(['SIGINT']);
    expect(c.stdout()).toMatch(/received SIGTERM: stopping; sending SIGINT to 3 crunch-run process\(es\) and waiting for them/);
    expect(c.stdout()).toMatch(/done 3 \(complete 0, cancelled 3\)\n$/);

    const token = f.rootToken.token;
    for (const [i, r] of records.entries()) {
      expect(r.argv.slice(1)).toEqual([stub!.command, '--mode=hang', stub!.recordArg, '--runtime-engine=docker', cs[i].uuid]);
      for (const a of r.argv) expect(a).not.toContain(token);
      expect(Object.keys(r.env).sort()).toEqual(['ARVADOS_API_HOST', 'ARVADOS_API_HOST_INSECURE', 'ARVADOS_API_TOKEN', 'PATH']);
      expect(r.env.ARVADOS_API_TOKEN).toBe(token);
    }
    expect(c.stdout() + c.stderr()).not.toContain(token);
  });

  it('a second signal exits at once with status 1', async () => {
    const f = await startFake();
    const x = f.addContainer(small);
    const c = local(f, 'stubborn', ['--stop-grace', '1m']);
    await waitFor(() => f.container(x.uuid)?.state === 'Running', 'Running');
    c.child.kill('SIGTERM');
    await waitFor(() => stub!.signals(x.uuid).includes('SIGINT'), 'SIGINT delivered');
    c.child.kill('SIGINT');
    expect((await c.exited).code).toBe(1);
    expect(c.stderr()).toMatch(/warning: received SIGINT again: exiting now without waiting for 1 crunch-run process\(es\)/);
  });

  it('--json: every stdout line is a JSON event', async () => {
    const f = await startFake();
    const x = f.addContainer(small);
    const huge = f.addContainer({ ...small, runtime_constraints: { vcpus: 64, ram: 1 } });
    const c = local(f, 'complete', ['--json']);
    await waitFor(() => c.stdout().includes(`"event":"finished","uuid":"${x.uuid}"`) && c.stdout().includes('"event":"rejected"'), 'finished and rejected');
    c.child.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    expect(c.stderr()).toBe('');
    expect(c.stdout()).toContain('"event":"credentials"');
    const events = c.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of events) {
      expect(Object.keys(e).slice(0, 3)).toEqual(['time', 'level', 'event']);
      expect(Object.keys(e).at(-1)).toBe('msg');
      expect(Number.isNaN(Date.parse(String(e.time)))).toBe(false);
    }
    const names = events.map((e) => e.event);
    for (const n of ['start', 'identified', 'locked', 'started', 'output', 'exited', 'finished', 'rejected', 'signal', 'status']) expect(names).toContain(n);
    expect(events.find((e) => e.event === 'finished' && e.uuid === x.uuid)).toMatchObject({ level: 'info', state: 'Complete', exit_code: 0, process_code: 0 });
    expect(events.find((e) => e.event === 'rejected')).toMatchObject({
      level: 'warn',
      uuid: huge.uuid,
      reason: 'container resource request cannot be fulfilled on this node: needs 64 vCPUs, capacity is 4',
    });
    expect(events.at(-1)).toMatchObject({ event: 'status', queued: 0, running: 0, done: 2, complete: 1, cancelled: 1 });
    expect(c.stdout()).not.toContain(f.rootToken.token);
  });
});
