// Races, faults and signals: two dispatchers on one queue, a flaky API, and
// SIGTERM to a dispatcher process.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type RunContainer } from '../../src/index.js';
import { FakeArvados, MemoryContainerApi, TestClock } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';

let fake: FakeArvados;
const dispatchers: Dispatcher[] = [];
afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await fake?.stop();
});

/** How a counting runner moves its container on and passes time. */
interface RunnerSeam {
  update(d: Dispatcher, uuid: string, state: 'Running' | 'Complete'): Promise<unknown>;
  pause(ms: number): Promise<void>;
}

const finalAttrs = (state: 'Running' | 'Complete') => (state === 'Complete' ? { state, exit_code: 0 } : { state });

/** Through the dispatcher's client, on real time. */
const overHttp: RunnerSeam = {
  update: (d, uuid, state) => d.client.updateContainer(uuid, finalAttrs(state)),
  pause: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/** A runner that counts how many runners are active per container at once. */
function countingRunner(seam: RunnerSeam = overHttp) {
  const active = new Map<string, number>();
  const calls = new Map<string, number>();
  let maxActive = 0;
  const run: RunContainer = async (d, c, updates) => {
    const n = (active.get(c.uuid) ?? 0) + 1;
    active.set(c.uuid, n);
    maxActive = Math.max(maxActive, n);
    calls.set(c.uuid, (calls.get(c.uuid) ?? 0) + 1);
    try {
      if (c.state === 'Locked') await seam.update(d, c.uuid, 'Running');
      await seam.pause(5);
      await seam.update(d, c.uuid, 'Complete');
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
    // In memory, on one test clock: the race is over the same store and lock
    // rules as over HTTPS, but no poll or wait depends on the machine's load.
    fake = new FakeArvados({ websocket: false, tls: false });
    const clock = new TestClock();
    const apis = [new MemoryContainerApi(fake), new MemoryContainerApi(fake, fake.addToken())];
    const cs = fake.addContainers(60, (i) => ({ priority: 1 + (i % 5) }));
    const apiOf = new Map<Dispatcher, MemoryContainerApi>();
    const r = countingRunner({ update: (d, uuid, state) => apiOf.get(d)!.updateContainer(uuid, finalAttrs(state)), pause: (ms) => clock.sleep(ms) });
    const on = (api: MemoryContainerApi): Dispatcher => {
      const d = new Dispatcher({ api, clock, pollInterval: 20, maxJobs: 30, events: false, incremental: false, handleSignals: false, runContainer: r.run });
      dispatchers.push(d);
      apiOf.set(d, api);
      return d;
    };
    const a = on(apis[0]);
    const b = on(apis[1]);
    const won = { a: 0, b: 0 };
    a.on('locked', () => won.a++);
    b.on('locked', () => won.b++);
    const runs = [a.run(), b.run()];
    const allComplete = (): boolean => cs.every((c) => fake.container(c.uuid)?.state === 'Complete');
    for (let i = 0; i < 1_000 && !allComplete(); i++) await clock.advance(20);
    expect(allComplete()).toBe(true);
    for (const c of cs) {
      expect(fake.runCount(c.uuid)).toBe(1);
      expect(fake.transitions.filter((t) => t.uuid === c.uuid && t.to === 'Locked')).toHaveLength(1);
      expect(r.calls.get(c.uuid)).toBe(1);
    }
    expect(won.a + won.b).toBe(60);
    // Each holds at most 30, so both get some, and some locks lost the race (a 422, not an error).
    expect(won.a).toBeGreaterThan(0);
    expect(won.b).toBeGreaterThan(0);
    expect(apis.reduce((n, api) => n + (api.calls.get('lockContainer') ?? 0), 0)).toBeGreaterThan(60);
    expect(r.maxActive()).toBe(1);
    // Both stop; the clock moves past any shutdown wait.
    let stopped = false;
    void Promise.all(dispatchers.splice(0).map((d) => d.stop())).then(() => (stopped = true));
    for (let i = 0; i < 100 && !stopped; i++) await clock.advance(1_000);
    await Promise.all(runs);
  });

  it('loses and double-runs nothing with 15% injected API faults of every kind', async () => {
    // Over HTTPS on real time: the faults are the HTTP layer's (resets, slow
    // and broken answers). Nothing here asserts a duration; its waits are for
    // states, long enough for a loaded machine.
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
    await waitFor(() => d.status.tracked === 0, 'every tracker released', 120_000);
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
