// Every example in examples/ runs here, as its README says to run it. The
// examples import the package by name ('arvados-dispatch'), which resolves to
// this package's own build in dist/ (Node, Jest and TypeScript all let a
// package import itself by name), so `npm run build` must have run first, as
// `npm test` does.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Dispatcher } from 'arvados-dispatch';
import { crunchRunSimPath, FakeArvados } from 'arvados-dispatch/testing';
import { CommandRunner } from '../../examples/custom-runner/command-runner.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const EXAMPLES = join(ROOT, 'examples');

// Examples run with a clean environment: none of the test runner's NODE_OPTIONS.
const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => {
  const e: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete e.NODE_OPTIONS;
  return e;
};
// Asynchronous, so that nothing else in this process waits on it.
const run = (args: string[], extra?: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, encoding: 'utf8', env: env(extra), timeout: 180_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ status: err ? (typeof code === 'number' ? code : null) : 0, stdout, stderr });
    });
  });

let work: string;
let crunchRun: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'arvados-dispatch-examples-'));
  // A crunch-run wrapper script, as a site would install one: the simulator
  // stands in for crunch-run.
  crunchRun = join(work, 'crunch-run');
  writeFileSync(crunchRun, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(crunchRunSimPath)} "$@"\n`);
  chmodSync(crunchRun, 0o755);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('examples/custom-runner', () => {
  let fake: FakeArvados;
  let dispatcher: Dispatcher | undefined;
  // The runner passes the client's credentials on to the command, which
  // (like crunch-run) knows nothing of the fake's certificate: hence insecure.
  const client = (): ReturnType<FakeArvados['client']> => fake.client({ insecure: true });
  beforeAll(async () => {
    fake = await new FakeArvados().start();
  });
  afterEach(async () => {
    await dispatcher?.stop();
    dispatcher = undefined;
  });
  afterAll(async () => {
    await fake.stop();
  });

  it('runs each container through the command, never more than maxContainers at once', async () => {
    const containers = fake.addContainers(5, (i) => ({ priority: 1 + i }));
    const done = Promise.all(containers.map((c) => fake.waitForState(c.uuid, ['Complete', 'Cancelled'])));
    const runner = new CommandRunner({ command: crunchRun, args: ['--work=100'], maxContainers: 2 });
    let most = 0;
    dispatcher = new Dispatcher({ client: client(), runner, pollInterval: 20, handleSignals: false });
    dispatcher.on('cycle', () => (most = Math.max(most, 2 - runner.capacity())));
    void dispatcher.run();
    expect((await done).map((c) => c.state)).toEqual(Array(5).fill('Complete'));
    await dispatcher.idle();
    for (const c of containers) expect(fake.runCount(c.uuid)).toBe(1);
    // The dispatcher never locked beyond the runner's capacity.
    expect(Math.max(...fake.transitions.map((_, i, all) => countLockedOrRunning(all.slice(0, i + 1))))).toBeLessThanOrEqual(2);
    expect(most).toBeGreaterThan(0);
  });

  it('interrupts the command when the container is cancelled', async () => {
    const c = fake.addContainer({ priority: 1 });
    const running = fake.waitForState(c.uuid, 'Running');
    const stopped = fake.waitForState(c.uuid, ['Complete', 'Cancelled']);
    const runner = new CommandRunner({ command: crunchRun, args: ['--mode=hang'], maxContainers: 2 });
    dispatcher = new Dispatcher({ client: client(), runner, pollInterval: 20, handleSignals: false });
    void dispatcher.run();
    await running;
    fake.setPriority(c.uuid, 0);
    expect((await stopped).state).toBe('Cancelled');
    await dispatcher.idle();
    expect(runner.capacity()).toBe(2);
  });

  it('reports a command that cannot start as a problem of this host, not of the container', async () => {
    const c = fake.addContainer({ priority: 1 });
    const runner = new CommandRunner({ command: join(work, 'no-such-command'), maxContainers: 1 });
    dispatcher = new Dispatcher({ client: client(), runner, pollInterval: 20, handleSignals: false });
    const released = new Promise<unknown[]>((resolve) => dispatcher!.on('released', (...args: unknown[]) => resolve(args)));
    void dispatcher.run();
    const [uuid, action] = await released;
    expect([uuid, action]).toEqual([c.uuid, 'unlocked']);
    expect(fake.container(c.uuid)?.state).toBe('Queued');
  });
});

/** Containers Locked or Running after the given transitions (from a fresh fake). */
function countLockedOrRunning(transitions: readonly { uuid: string; to: string }[]): number {
  const state = new Map<string, string>();
  for (const t of transitions) state.set(t.uuid, t.to);
  return [...state.values()].filter((s) => s === 'Locked' || s === 'Running').length;
}

/** Starts the launcher example; `exited` resolves with its exit code and everything it printed. */
function launch(extra: Record<string, string>): { child: ReturnType<typeof spawn>; exited: Promise<{ code: number | null; out: string }> } {
  const child = spawn(process.execPath, [join(EXAMPLES, 'launcher', 'batch-launcher.mjs')], { cwd: ROOT, env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, exited: once(child, 'close').then(([code]) => ({ code: code as number | null, out })) };
}

describe('examples/launcher/batch-launcher.mjs', () => {
  it('runs the queue on the allocation with crunch-run, then exits 0 once the queue stays empty', async () => {
    const fake = await new FakeArvados().start();
    try {
      const containers = fake.addContainers(3, { priority: 1, runtime_constraints: { vcpus: 1, ram: 2 ** 28 } });
      const { exited } = launch({ ...fake.env(), CRUNCH_RUN: crunchRun, SLURM_CPUS_ON_NODE: '2', SLURM_MEM_PER_NODE: '1024', LAUNCHER_IDLE_EXIT: '0.3', LAUNCHER_POLL: '0.05' });
      const { code, out } = await exited;
      expect(out).toContain('queue drained: stopping');
      expect(code).toBe(0);
      for (const c of containers) {
        expect(fake.container(c.uuid)?.state).toBe('Complete');
        expect(fake.runCount(c.uuid)).toBe(1);
        expect(out).toContain(`${c.uuid}: Complete`);
      }
    } finally {
      await fake.stop();
    }
  });

  it('stops cleanly on SIGTERM, as a batch system ends a job at its time limit', async () => {
    const fake = await new FakeArvados().start();
    try {
      const { child, exited } = launch({ ...fake.env(), CRUNCH_RUN: crunchRun, LAUNCHER_IDLE_EXIT: '0', LAUNCHER_POLL: '0.05' });
      // Signal once it polls: the dispatcher has identified its token by then.
      while (fake.count('containers.list') === 0) await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGTERM');
      const { code, out } = await exited;
      expect(out).toContain('dispatcher stopped');
      expect(code).toBe(0);
    } finally {
      await fake.stop();
    }
  });

  it('fails with one line when the token is rejected', async () => {
    const fake = await new FakeArvados().start();
    try {
      const { code, out } = await launch({ ...fake.env('not-a-token'), CRUNCH_RUN: crunchRun, LAUNCHER_POLL: '0.05' }).exited;
      expect(out.trim().split('\n')).toEqual([expect.stringMatching(/^batch-launcher: .*401/)]);
      expect(code).toBe(1);
    } finally {
      await fake.stop();
    }
  });
});

describe('examples/jest', () => {
  it('passes under Jest with its own configuration', async () => {
    const r = await run(['--experimental-vm-modules', '--disable-warning=ExperimentalWarning', join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js'), '--ci', '--config', join(EXAMPLES, 'jest', 'jest.config.js')]);
    expect(r.stderr).toMatch(/Tests:\s+2 passed, 2 total/);
    expect(r.status).toBe(0);
  });
});

describe('examples/node-test', () => {
  it('passes under node --test', async () => {
    const r = await run(['--test', join(EXAMPLES, 'node-test', 'dispatcher.test.mjs')]);
    expect(r.stdout).toMatch(/^# pass 2$/m);
    expect(r.stdout).toMatch(/^# fail 0$/m);
    expect(r.status).toBe(0);
  });
});
