// Races, faults and signals: two dispatchers on one queue, a flaky API, and
// SIGTERM to a dispatcher process.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type RunContainer } from '../../src/index.js';
import { FakeArvados } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';

let fake: FakeArvados;
const dispatchers: Dispatcher[] = [];
afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await fake?.stop();
});

/** A runner that counts how many runners are active per container at once. */
function countingRunner() {
  const active = new Map<string, number>();
  const calls = new Map<string, number>();
  let maxActive = 0;
  const run: RunContainer = async (d, c, updates) => {
    const n = (active.get(c.uuid) ?? 0) + 1;
    active.set(c.uuid, n);
    maxActive = Math.max(maxActive, n);
    calls.set(c.uuid, (calls.get(c.uuid) ?? 0) + 1);
    try {
      if (c.state === 'Locked') await d.client.updateContainer(c.uuid, { state: 'Running' });
      await new Promise((r) => setTimeout(r, 5));
      await d.client.updateContainer(c.uuid, { state: 'Complete', exit_code: 0 });
      for await (const _ of updates) void _;
    } finally {
      active.set(c.uuid, active.get(c.uuid)! - 1);
    }
  };
  return { run, calls, maxActive: () => maxActive };
}

function dispatcher(run: RunContainer, token?: string, client: Partial<Parameters<FakeArvados['client']>[0]> = {}) {
  const d = new Dispatcher({
    client: fake.client({ token, retryDelay: 5, maxRetryDelay: 20, timeout: 2000, ...client }),
    pollInterval: 20,
    handleSignals: false,
    runContainer: run,
  });
  dispatchers.push(d);
  return d;
}

describe('Dispatcher under races and faults', () => {
  it('two dispatchers with two tokens on one queue run each container exactly once', async () => {
    fake = await new FakeArvados().start();
    const other = fake.addToken();
    const cs = fake.addContainers(60, (i) => ({ priority: 1 + (i % 5) }));
    const r = countingRunner();
    const a = dispatcher(r.run);
    const b = dispatcher(r.run, other.token);
    const won = { a: 0, b: 0 };
    a.on('locked', () => won.a++);
    b.on('locked', () => won.b++);
    void a.run();
    void b.run();
    await waitFor(() => cs.every((c) => fake.container(c.uuid)?.state === 'Complete'), 'all complete');
    for (const c of cs) {
      expect(fake.runCount(c.uuid)).toBe(1);
      expect(fake.transitions.filter((t) => t.uuid === c.uuid && t.to === 'Locked')).toHaveLength(1);
      expect(r.calls.get(c.uuid)).toBe(1);
    }
    expect(won.a + won.b).toBe(60);
    expect(fake.requests.filter((q) => q.route === 'containers.lock' && q.status === 422).length).toBeGreaterThanOrEqual(0);
    expect(r.maxActive()).toBe(1);
  });

  it('loses and double-runs nothing with 15% injected API faults of every kind', async () => {
    fake = await new FakeArvados({ faults: { rate: 0.15, seed: 20261129, retryAfter: 0 } }).start();
    const cs = fake.addContainers(40, (i) => ({ priority: 1 + (i % 4) }));
    const r = countingRunner();
    const d = dispatcher(r.run, undefined, { retries: 10, timeout: 300 });
    void d.run();
    await waitFor(() => cs.every((c) => fake.container(c.uuid)?.state === 'Complete'), 'all complete despite faults', 120_000);
    const faults = fake.requests.filter((q) => q.fault).length;
    expect(faults).toBeGreaterThanOrEqual(10);
    for (const c of cs) expect(fake.runCount(c.uuid)).toBe(1);
    expect(r.maxActive()).toBe(1);
    fake.setFaults(undefined);
    await waitFor(() => d.status.tracked === 0, 'every tracker released');
  }, 180_000);
});

describe('Dispatcher process and signals', () => {
  const built = existsSync(new URL('../../dist/index.js', import.meta.url));
  (built ? it : it.skip)('SIGTERM to a dispatcher process: exit 0, every stream ended, containers left for a restart', async () => {
    fake = await new FakeArvados().start();
    const cs = fake.addContainers(3);
    const child = spawn(process.execPath, [new URL('../fixtures/dispatcher-child.mjs', import.meta.url).pathname], {
      env: { PATH: process.env.PATH, ...fake.env() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor(() => out.split('\n').filter((l) => l.startsWith('started ')).length === 3, 'three runners started');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const c of cs) expect(out).toContain(`ended ${c.uuid} stopped`);
    expect(out).toContain('run resolved');
    expect(cs.map((c) => fake.container(c.uuid)?.state)).toEqual(['Running', 'Running', 'Running']);
  });
  if (!built) console.warn('dist/ is not built: run `npm run build` (npm test does) for the process test');
});
