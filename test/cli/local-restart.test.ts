// A restart never runs a container twice under `local`: the built CLI is
// killed with SIGKILL while its crunch-run holds a container Locked; the
// restarted CLI finds the surviving crunch-run through its pid file (pid and
// start time) and follows it instead of starting another.
// Needs `npm run build` first (`npm test` does it).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import { alive, makeCrunchRunStub, type CrunchRunStub } from '../fixtures/crunch-run-stub.js';
import { waitFor } from '../helpers/wait.js';
import { built, spawnCli, type Cli } from '../helpers/cli.js';

const itBuilt = built ? it : it.skip;
const running: ChildProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const f of cleanups.splice(0).reverse()) await f();
});

/** Pids of live processes whose command line holds `command` and `uuid`. */
function crunchRuns(command: string, uuid: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      const state = readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]?.[0];
      if (state !== 'Z' && argv.includes(command) && argv.includes(uuid)) pids.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

itBuilt('follows a crunch-run that outlived a SIGKILLed dispatcher instead of starting another; the container completes once', async () => {
  const fake = await new FakeArvados().start();
  cleanups.push(() => fake.stop());
  const home = mkdtempSync(join(tmpdir(), 'arvados-dispatch-home-'));
  cleanups.push(() => rmSync(home, { recursive: true, force: true }));
  const stub: CrunchRunStub = makeCrunchRunStub();
  cleanups.push(() => {
    for (const r of stub.records()) if (alive(r.pid)) process.kill(r.pid, 'SIGKILL');
    stub.remove();
  });
  const runtime = join(home, 'run');
  const start = (): Cli => {
    const c = spawnCli(
      ['local', '--poll-interval', '50ms', '--crunch-run-command', stub.command, '--crunch-run-arg=--mode=locked-release', `--crunch-run-arg=${stub.recordArg}`, '--vcpus', '4', '--ram', '8GiB'],
      { HOME: home, XDG_RUNTIME_DIR: runtime, ...fake.env() },
    );
    running.push(c.child);
    return c;
  };
  const x = fake.addContainer({ priority: 1, runtime_constraints: { vcpus: 1, ram: 64 * 2 ** 20 } });

  const first = start();
  await waitFor(() => stub.record(x.uuid) !== undefined, 'crunch-run started');
  expect(fake.container(x.uuid)?.state).toBe('Locked');
  const [pid] = crunchRuns(stub.command, x.uuid);
  // The pid file is private to this user.
  const dir = join(runtime, 'arvados-dispatch', 'local');
  await waitFor(() => readdirSync(dir).some((d) => readdirSync(join(dir, d)).includes(`${x.uuid}.pid`)), 'pid file');
  const sub = readdirSync(dir)[0];
  expect(statSync(join(dir, sub)).mode & 0o777).toBe(0o700);
  expect(statSync(join(dir, sub, `${x.uuid}.pid`)).mode & 0o777).toBe(0o600);

  first.child.kill('SIGKILL');
  await first.exited;
  expect(alive(pid)).toBe(true);

  const second = start();
  await waitFor(() => second.stdout().includes(`${x.uuid} following crunch-run pid ${pid}`), 'the survivor followed');
  expect(crunchRuns(stub.command, x.uuid)).toEqual([pid]);
  stub.release(x.uuid);
  await waitFor(() => fake.container(x.uuid)?.state === 'Complete', 'Complete');
  await waitFor(() => !alive(pid) || crunchRuns(stub.command, x.uuid).length === 0, 'crunch-run exited');
  expect(fake.container(x.uuid)?.state).toBe('Complete');
  expect(fake.runCount(x.uuid)).toBe(1);
  expect(second.stdout()).not.toMatch(/started crunch-run/);
  second.child.kill('SIGTERM');
  expect((await second.exited).code).toBe(0);
  expect(crunchRuns(stub.command, x.uuid)).toEqual([]);
}, 60_000);
