// The Dispatcher against FakeArvados over HTTPS: the Go library's tests and
// the scenarios its history taught (docs/design.md), each checked on the API
// calls made and the final container states.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Dispatcher, type Container, type ContainerUpdates, type DispatcherOptions, type RunContainer } from '../../src/index.js';
import { FakeArvados, type FakeArvadosOptions } from '../../src/testing/index.js';
import { deferred, waitFor } from '../helpers/wait.js';

interface Call {
  uuid: string;
  container: Container;
  updates: Container[];
  ended?: string;
}

let fake: FakeArvados;
let dispatchers: Dispatcher[] = [];

async function startFake(opts: FakeArvadosOptions = {}): Promise<FakeArvados> {
  fake = await new FakeArvados(opts).start();
  return fake;
}

/** A dispatcher on the fake with short intervals; records every runner call. */
function makeDispatcher(runContainer: RunContainer, opts: Partial<DispatcherOptions> & { token?: string } = {}) {
  const { token, ...rest } = opts;
  const calls: Call[] = [];
  const d = new Dispatcher({
    // No test here waits for a request to time out: a long timeout keeps a
    // slow answer on a loaded machine from turning into a retried PUT.
    client: fake.client({ token, retryDelay: 5, maxRetryDelay: 20, timeout: 30_000 }),
    pollInterval: 25,
    handleSignals: false,
    shutdownTimeout: 5000,
    ...rest,
    runContainer: async (disp, container, updates) => {
      const call: Call = { uuid: container.uuid, container, updates: [] };
      calls.push(call);
      updates.signal.addEventListener('abort', () => (call.ended = String(updates.signal.reason)));
      return runContainer(disp, container, tee(updates, call));
    },
  });
  dispatchers.push(d);
  return { d, calls, warnings: collect(d) };
}

function collect(d: Dispatcher): string[] {
  const warnings: string[] = [];
  d.on('warning', (m) => warnings.push(m));
  return warnings;
}

/** Passes updates through to the runner while recording them. */
function tee(updates: ContainerUpdates, call: Call): ContainerUpdates {
  return {
    signal: updates.signal,
    get endReason() {
      return updates.endReason;
    },
    async *[Symbol.asyncIterator]() {
      for await (const c of updates) {
        call.updates.push(c);
        yield c;
      }
    },
  };
}

/** Waits until the updates stream ends. */
async function drain(updates: AsyncIterable<Container>): Promise<void> {
  for await (const _ of updates) void _;
}

/** Like crunch-run: Running, then Complete; stops (Cancelled) on priority 0 or when updates end. */
const crunchRunLike: RunContainer = async (d, c, updates) => {
  await d.client.updateContainer(c.uuid, { state: 'Running' });
  await d.client.updateContainer(c.uuid, { state: 'Complete', exit_code: 0 });
  await drain(updates);
};

beforeEach(() => {
  dispatchers = [];
});
afterEach(async () => {
  await Promise.all(dispatchers.map((d) => d.stop()));
  await fake?.stop();
});

describe('Dispatcher: identity and start', () => {
  it('rejects run() with one line when the token is rejected', async () => {
    await startFake();
    const { d } = makeDispatcher(crunchRunLike, { token: 'not-a-valid-token' });
    const err = (await d.run().catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^error getting my token UUID \(the API token was rejected\): .*Not logged in/);
    expect(err.message).not.toContain('\n');
    expect(err.message).not.toContain('not-a-valid-token');
    expect(fake.count('containers.list')).toBe(0);
  });

  it('rejects run() when the API is unreachable, without polling', async () => {
    await startFake({ tls: false });
    const host = fake.apiHost;
    await fake.stop();
    const { ArvadosClient } = await import('../../src/index.js');
    const d = new Dispatcher({ client: new ArvadosClient({ apiHost: host, apiToken: 'x', retries: 0 }), runContainer: crunchRunLike, handleSignals: false });
    await expect(d.run()).rejects.toThrow(/cannot reach the API server.*connection refused/);
  });

  it('polls at once, then every pollInterval', async () => {
    await startFake();
    const { d } = makeDispatcher(crunchRunLike, { pollInterval: 60_000 });
    const cycles: number[] = [];
    d.on('cycle', (s) => cycles.push(s.cycles));
    void d.run();
    await waitFor(() => cycles.length === 1, 'first cycle');
    expect(d.auth?.uuid).toBe(fake.rootToken.uuid);
    expect(fake.count('current')).toBe(1);
  });

  it('refuses a second run() and bad options', async () => {
    await startFake();
    const { d } = makeDispatcher(crunchRunLike);
    void d.run();
    await expect(d.run()).rejects.toThrow(/already called/);
    expect(() => new Dispatcher({ runContainer: crunchRunLike, client: fake.client(), pollInterval: 0 })).toThrow(RangeError);
    expect(() => new Dispatcher({ runContainer: crunchRunLike, client: fake.client(), lockConcurrency: 0 })).toThrow(RangeError);
  });
});

describe('Dispatcher: locking and handing over', () => {
  it('locks a Queued container and hands it over Locked, with who holds the lock', async () => {
    await startFake();
    const c = fake.addContainer({ priority: 3 });
    const { d, calls } = makeDispatcher(crunchRunLike);
    void d.run();
    await waitFor(() => fake.container(c.uuid)?.state === 'Complete', 'container complete');
    expect(calls).toHaveLength(1);
    expect(calls[0].container).toMatchObject({ uuid: c.uuid, state: 'Locked', locked_by_uuid: fake.rootToken.uuid, auth_uuid: expect.stringMatching(/-gj3su-/) });
    expect(Object.isFrozen(calls[0].container)).toBe(true);
    expect(Object.isFrozen(calls[0].container.runtime_constraints)).toBe(true);
    expect(fake.count('containers.lock')).toBe(1);
    expect(fake.runCount(c.uuid)).toBe(1);
  });

  it('locks in priority order', async () => {
    await startFake();
    const cs = [3, 1, 5, 2, 4].map((p) => fake.addContainer({ priority: p * 1000 }));
    const { d } = makeDispatcher(async (_d, _c, u) => drain(u), { lockConcurrency: 1 });
    void d.run();
    await waitFor(() => fake.transitions.filter((t) => t.to === 'Locked').length === 5, 'five locks');
    const order = fake.transitions.filter((t) => t.to === 'Locked').map((t) => fake.container(t.uuid)!.priority);
    expect(order).toEqual([5000, 4000, 3000, 2000, 1000]);
    expect(cs).toHaveLength(5);
  });

  it('orders priorities above 2^53 correctly and equal ones oldest first', async () => {
    await startFake();
    const big = 2 ** 60;
    const a = fake.addContainer({ priority: big + 4096 });
    const b = fake.addContainer({ priority: big + 8192 });
    const c1 = fake.addContainer({ priority: 7 });
    const c2 = fake.addContainer({ priority: 7 });
    const { d } = makeDispatcher(async (_d, _c, u) => drain(u), { lockConcurrency: 1 });
    void d.run();
    await waitFor(() => fake.transitions.filter((t) => t.to === 'Locked').length === 4, 'four locks');
    expect(fake.transitions.filter((t) => t.to === 'Locked').map((t) => t.uuid)).toEqual([b.uuid, a.uuid, c1.uuid, c2.uuid]);
  });

  it('pages through more containers than the server returns per page', async () => {
    await startFake({ maxItemsPerResponse: 20 });
    fake.addContainers(75, (i) => ({ priority: 1 + (i % 10) }));
    const { d, calls } = makeDispatcher(crunchRunLike, { batchSize: 50 });
    void d.run();
    // Some 300 requests over HTTPS: room for a loaded machine (a state wait, not a measure).
    await waitFor(() => fake.containers('Complete').length === 75, 'all 75 complete', 90_000);
    expect(new Set(calls.map((c) => c.uuid)).size).toBe(75);
    expect(calls).toHaveLength(75);
    // Every page request asked for 50 and walked by uuid: offsets would skip
    // containers as locked ones leave the Queued set and pages shrink.
    // (Not counting each sweep's one-item read of the newest modified_at.)
    const pages = fake.requests.filter((r) => r.route === 'containers.list' && r.params?.limit !== '1');
    expect(pages.every((r) => r.params?.limit === '50' && r.params?.count === 'none')).toBe(true);
  }, 120_000);

  it('asks for pages of 1000 by default and pages on when the server caps them lower', async () => {
    await startFake({ maxItemsPerResponse: 20 });
    fake.addContainers(45, (i) => ({ priority: 1 + (i % 10) }));
    const { d, calls } = makeDispatcher(async (_d, _c, u) => drain(u));
    void d.run();
    await waitFor(() => calls.length === 45, 'all 45 handed over', 90_000);
    expect(new Set(calls.map((c) => c.uuid)).size).toBe(45);
    const pages = fake.requests.filter((r) => r.route === 'containers.list' && r.params?.limit !== '1');
    expect(pages.length).toBeGreaterThan(2);
    expect(pages.every((r) => r.params?.limit === '1000')).toBe(true);
  }, 120_000);

  it('never locks a Queued container with priority 0', async () => {
    await startFake();
    const c = fake.addContainer({ priority: 0 });
    const { d } = makeDispatcher(crunchRunLike);
    void d.run();
    await waitFor(() => d.status.cycles >= 3, 'three cycles');
    expect(fake.count('containers.lock')).toBe(0);
    expect(fake.container(c.uuid)?.state).toBe('Queued');
  });

  it("never touches containers locked by another token", async () => {
    await startFake();
    const other = fake.addToken();
    const theirs = fake.addContainer({ state: 'Locked', locked_by_uuid: other.uuid });
    const running = fake.addContainer({ state: 'Running', locked_by_uuid: other.uuid });
    const { d, calls } = makeDispatcher(crunchRunLike);
    void d.run();
    await waitFor(() => d.status.cycles >= 3, 'three cycles');
    expect(calls).toHaveLength(0);
    expect(fake.requests.filter((r) => r.uuid === theirs.uuid || r.uuid === running.uuid)).toEqual([]);
    expect(fake.container(theirs.uuid)).toMatchObject({ state: 'Locked', locked_by_uuid: other.uuid });
  });

  it('adopts its own Locked and Running containers after a restart, without locking', async () => {
    await startFake();
    const locked = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    const running = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    const seen = new Map<string, string>();
    const { d, calls } = makeDispatcher(async (disp, c, updates) => {
      seen.set(c.uuid, c.state);
      if (c.state === 'Locked') await disp.client.updateContainer(c.uuid, { state: 'Running' });
      await disp.client.updateContainer(c.uuid, { state: 'Complete', exit_code: 0 });
      await drain(updates);
    });
    const adopted: string[] = [];
    d.on('adopted', (c) => adopted.push(c.uuid));
    void d.run();
    await waitFor(() => fake.containers('Complete').length === 2, 'both complete');
    expect(seen).toEqual(new Map([[locked.uuid, 'Locked'], [running.uuid, 'Running']]));
    expect(adopted.sort()).toEqual([locked.uuid, running.uuid].sort());
    expect(fake.count('containers.lock')).toBe(0);
    expect(calls).toHaveLength(2);
  });

  it('treats a lost lock race (422) as not an error and a lock failure (500) as a warning, retrying next poll', async () => {
    await startFake();
    const c = fake.addContainer();
    fake.override('containers.lock', { status: 500, body: { errors: ['lock exploded'] }, times: 5 });
    const { d, calls, warnings } = makeDispatcher(crunchRunLike, { client: fake.client({ retries: 0 }) });
    void d.run();
    await waitFor(() => fake.container(c.uuid)?.state === 'Complete', 'complete after lock failures');
    expect(warnings.filter((w) => w.startsWith(`error locking container ${c.uuid}`))).toHaveLength(5);
    expect(calls).toHaveLength(1);
  });

  it('throttles start attempts per container with minRetryPeriod', async () => {
    await startFake();
    const c = fake.addContainer();
    fake.override('containers.lock', { status: 500, body: { errors: ['no'] } });
    const { d } = makeDispatcher(crunchRunLike, { client: fake.client({ retries: 0 }), minRetryPeriod: 60_000, pollInterval: 10 });
    void d.run();
    await waitFor(() => d.status.cycles >= 10, 'ten cycles');
    expect(fake.count('containers.lock')).toBe(1);
    expect(fake.container(c.uuid)?.state).toBe('Queued');
  });

  it('keeps polling when listing fails, and stops nothing', async () => {
    await startFake();
    const c = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    const release = deferred();
    const { d, calls, warnings } = makeDispatcher(async (_d, _c, u) => {
      await Promise.race([drain(u), release.promise]);
    }, { client: fake.client({ retries: 0 }) });
    void d.run();
    await waitFor(() => calls.length === 1, 'adopted');
    fake.override('containers.list', { status: 500, body: '{}' });
    await waitFor(() => warnings.filter((w) => w.startsWith('error getting list of containers')).length >= 3, 'list warnings');
    expect(calls[0].ended).toBeUndefined(); // nothing is closed when a query failed
    fake.clearOverride();
    fake.completeContainer(c.uuid);
    await waitFor(() => calls[0].ended === 'finished', 'stream ended once the API answers again');
    release.resolve();
  });
});

describe('Dispatcher: following containers', () => {
  it('delivers changed records only, latest first, including priority 0', async () => {
    await startFake();
    const c = fake.addContainer({ priority: 5 });
    const { d, calls } = makeDispatcher(async (disp, ct, updates) => {
      await disp.client.updateContainer(ct.uuid, { state: 'Running' });
      for await (const u of updates) {
        if (u.priority === 0) {
          await disp.client.updateContainer(ct.uuid, { state: 'Cancelled' });
          break;
        }
      }
    });
    void d.run();
    await waitFor(() => fake.container(c.uuid)?.state === 'Running', 'running');
    const cycles = d.status.cycles;
    await waitFor(() => d.status.cycles >= cycles + 3, 'three more cycles');
    const before = calls[0].updates.length;
    expect(before).toBeLessThanOrEqual(2); // the post-lock and the Running records, not one per poll
    fake.setPriority(c.uuid, 0);
    await waitFor(() => fake.container(c.uuid)?.state === 'Cancelled', 'cancelled after priority 0');
    expect(calls[0].updates.at(-1)?.priority).toBe(0);
  });

  it('is not stalled by a runner that never reads updates', async () => {
    await startFake();
    const stuck = fake.addContainer({ priority: 100 });
    const release = deferred();
    const { d } = makeDispatcher(async (disp, ct, updates) => {
      if (ct.uuid === stuck.uuid) {
        await disp.client.updateContainer(ct.uuid, { state: 'Running' });
        await release.promise; // never iterates `updates`
        return;
      }
      return crunchRunLike(disp, ct, updates);
    });
    void d.run();
    await waitFor(() => fake.container(stuck.uuid)?.state === 'Running', 'stuck runner running');
    for (let i = 0; i < 20; i++) fake.setPriority(stuck.uuid, 100 + i); // many updates nobody reads
    const others = fake.addContainers(10);
    await waitFor(() => others.every((o) => fake.container(o.uuid)?.state === 'Complete'), 'others complete');
    release.resolve();
    await waitFor(() => fake.container(stuck.uuid)?.state === 'Cancelled', 'stuck one cancelled after its runner returned');
  });

  it('ends the stream when the container finishes, is requeued, vanishes or is locked by another token', async () => {
    await startFake();
    const other = fake.addToken();
    const cs = fake.addContainers(4);
    const { d, calls } = makeDispatcher(async (disp, ct, u) => {
      await disp.client.updateContainer(ct.uuid, { state: 'Running' });
      await drain(u);
    });
    void d.run();
    await waitFor(() => cs.every((c) => fake.container(c.uuid)?.state === 'Running'), 'all running');
    fake.completeContainer(cs[0].uuid);
    fake.forceUpdate(cs[1].uuid, { state: 'Queued', locked_by_uuid: null, priority: 0 });
    fake.deleteContainer(cs[2].uuid);
    fake.forceUpdate(cs[3].uuid, { locked_by_uuid: other.uuid });
    await waitFor(() => calls.every((c) => c.ended), 'all streams ended');
    const reasons = Object.fromEntries(calls.map((c) => [c.uuid, c.ended]));
    expect(reasons).toEqual({
      [cs[0].uuid]: 'finished',
      [cs[1].uuid]: 'requeued',
      [cs[2].uuid]: 'vanished',
      [cs[3].uuid]: 'locked-by-other',
    });
    // The other token's container was left alone after the runner returned.
    await waitFor(() => d.status.tracked === 0, 'trackers released');
    expect(fake.container(cs[3].uuid)).toMatchObject({ state: 'Running', locked_by_uuid: other.uuid });
  });

  it('keeps steady-state sweeps to the pages of the two queries: nothing per container', async () => {
    await startFake();
    fake.addContainers(30, () => ({ state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    const { d, calls } = makeDispatcher(async (_d, _c, u) => drain(u), { batchSize: 10, incremental: false });
    const counts: number[] = [];
    d.on('cycle', () => {
      counts.push(fake.count());
      fake.resetCounts();
    });
    void d.run();
    await waitFor(() => counts.length >= 4, 'four cycles');
    expect(calls).toHaveLength(30);
    // Q1: 3 full pages + an empty one; Q2: one empty page.
    expect(counts.slice(2)).toEqual([5, 5]);
  });
});

describe('Dispatcher: after a runner settles', () => {
  it('records a rejection as a dispatch log and unlocks, until MaxDispatchAttempts cancels', async () => {
    await startFake({ maxDispatchAttempts: 3 });
    const c = fake.addContainer();
    const { d, calls } = makeDispatcher(async () => {
      throw new Error('no node can run this');
    });
    void d.run();
    await waitFor(() => fake.container(c.uuid)?.state === 'Cancelled', 'cancelled by the API');
    expect(calls).toHaveLength(3);
    expect(fake.container(c.uuid)).toMatchObject({ lock_count: 3, runtime_status: { error: expect.stringContaining('MaxDispatchAttempts') } });
    const logs = fake.logs.filter((l) => l.object_uuid === c.uuid);
    expect(logs).toHaveLength(3);
    expect(logs[0]).toMatchObject({ event_type: 'dispatch', properties: { text: `Error running container ${c.uuid}: no node can run this` } });
    expect(fake.count('containers.unlock')).toBe(3);
  });

  it('turns a synchronous throw into the same path', async () => {
    await startFake({ maxDispatchAttempts: 1 });
    const c = fake.addContainer();
    const { d } = makeDispatcher((() => {
      throw new TypeError('sync');
    }) as unknown as RunContainer);
    void d.run();
    await waitFor(() => fake.container(c.uuid)?.state === 'Cancelled', 'cancelled');
    expect(fake.logs[0]?.properties.text).toContain('sync');
  });

  it('cancels a container its runner left Running (never PUTs Queued on Running, which the API refuses)', async () => {
    await startFake();
    const c = fake.addContainer();
    const { d } = makeDispatcher(async (disp, ct) => {
      await disp.client.updateContainer(ct.uuid, { state: 'Running' });
    });
    const released: string[] = [];
    d.on('released', (uuid, action) => released.push(`${uuid} ${action}`));
    void d.run();
    await waitFor(() => fake.container(c.uuid)?.state === 'Cancelled' && released.length > 0, 'cancelled');
    expect(released).toEqual([`${c.uuid} cancelled`]);
    expect(fake.requests.filter((r) => r.route === 'containers.update' && r.status === 422)).toEqual([]);
  });

  it('judges on a fresh record: a runner that completed its container leaves it alone', async () => {
    await startFake();
    const c = fake.addContainer();
    const { d } = makeDispatcher(async (disp, ct) => {
      await disp.client.updateContainer(ct.uuid, { state: 'Running' });
      await disp.client.updateContainer(ct.uuid, { state: 'Complete', exit_code: 0 });
    });
    void d.run();
    await waitFor(() => d.status.cycles >= 3 && d.status.tracked === 0, 'released');
    expect(fake.container(c.uuid)?.state).toBe('Complete');
    expect(fake.count('containers.unlock')).toBe(0);
  });

  it('retries cleanup after the next poll when the API fails', async () => {
    await startFake();
    const c = fake.addContainer();
    const { d } = makeDispatcher(async () => {}, { client: fake.client({ retries: 0 }) });
    fake.override('containers.unlock', { status: 503, body: {}, times: 3 });
    void d.run();
    await waitFor(() => fake.count('containers.unlock') >= 4, 'unlock retried');
    await waitFor(() => (fake.container(c.uuid)?.lock_count ?? 0) >= 2, 'relocked after the unlock worked');
  });

  it('never runs two runners for one container, even while an old one is still finishing', async () => {
    await startFake();
    const c = fake.addContainer();
    let active = 0;
    let maxActive = 0;
    const finishFirst = deferred();
    let n = 0;
    const { d, calls } = makeDispatcher(async (_disp, _ct, updates) => {
      active++;
      maxActive = Math.max(maxActive, active);
      const me = ++n;
      await drain(updates);
      if (me === 1) await finishFirst.promise; // slow cleanup after the stream ended
      active--;
    });
    void d.run();
    await waitFor(() => calls.length === 1, 'first runner');
    // Requeued behind the runner's back (e.g. by an admin): the stream ends, the runner lingers.
    fake.forceUpdate(c.uuid, { state: 'Queued', locked_by_uuid: null });
    await waitFor(() => calls[0].ended === 'requeued', 'stream ended');
    const cycles = d.status.cycles;
    await waitFor(() => d.status.cycles >= cycles + 5, 'five more cycles');
    expect(calls).toHaveLength(1);
    expect(fake.container(c.uuid)?.state).toBe('Queued');
    finishFirst.resolve();
    await waitFor(() => calls.length === 2, 'second runner after the first settled');
    expect(maxActive).toBe(1);
  });
});

describe('Dispatcher: trackContainer', () => {
  it('hands over a Queued container with an ended stream (ports TestTrackContainer)', async () => {
    await startFake();
    const c = fake.addContainer();
    const got = deferred<{ state: string; updates: number; reason?: string }>();
    const { d } = makeDispatcher(async (_disp, ct, updates) => {
      let n = 0;
      for await (const _ of updates) n++;
      got.resolve({ state: ct.state, updates: n, reason: updates.endReason });
    }, { pollInterval: 60_000 });
    const tracking = d.trackContainer(c.uuid); // before run(): waits for identity
    void d.run();
    await tracking;
    expect(await got.promise).toEqual({ state: 'Queued', updates: 0, reason: 'requeued' });
  });

  it('ignores a container locked by another token and one already tracked', async () => {
    await startFake();
    const other = fake.addToken();
    const theirs = fake.addContainer({ state: 'Locked', locked_by_uuid: other.uuid });
    const mine = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    const { d, calls } = makeDispatcher(async (_d, _c, u) => drain(u), { pollInterval: 60_000 });
    void d.run();
    await d.trackContainer(theirs.uuid);
    await d.trackContainer(mine.uuid);
    await d.trackContainer(mine.uuid);
    expect(calls.map((c) => c.uuid)).toEqual([mine.uuid]);
    await expect(d.trackContainer('not-a-uuid')).rejects.toThrow(TypeError);
  });
});

describe('Dispatcher: stopping', () => {
  it('stops on stop(): streams end, runners are awaited, states are left for a restart', async () => {
    await startFake();
    const cs = fake.addContainers(3);
    const { d, calls } = makeDispatcher(async (disp, ct, u) => {
      await disp.client.updateContainer(ct.uuid, { state: 'Running' });
      await drain(u);
      await new Promise((r) => setTimeout(r, 50)); // some cleanup time
    });
    const listeners = process.listenerCount('SIGTERM');
    const done = d.run();
    await waitFor(() => cs.every((c) => fake.container(c.uuid)?.state === 'Running'), 'all running');
    const stops = [d.stop(), d.stop()];
    await Promise.all(stops);
    await done;
    expect(calls.map((c) => c.ended)).toEqual(['stopped', 'stopped', 'stopped']);
    expect(d.status.runners).toBe(0);
    expect(cs.map((c) => fake.container(c.uuid)?.state)).toEqual(['Running', 'Running', 'Running']);
    expect(fake.count('containers.unlock')).toBe(0);
    expect(process.listenerCount('SIGTERM')).toBe(listeners);

    // A new dispatcher with the same token resumes them.
    const again = makeDispatcher(async (disp, ct, u) => {
      await disp.client.updateContainer(ct.uuid, { state: 'Complete', exit_code: 0 });
      await drain(u);
    });
    void again.d.run();
    await waitFor(() => fake.containers('Complete').length === 3, 'resumed and completed');
  });

  it('stops on an AbortSignal', async () => {
    await startFake();
    const { d } = makeDispatcher(crunchRunLike);
    const ac = new AbortController();
    const done = d.run({ signal: ac.signal });
    await waitFor(() => d.status.cycles >= 1, 'a cycle');
    ac.abort();
    await expect(done).resolves.toBeUndefined();
  });

  it('gives up on a runner that ignores the stop after shutdownTimeout', async () => {
    await startFake();
    fake.addContainer();
    const { d, calls, warnings } = makeDispatcher(() => new Promise<void>(() => {}), { shutdownTimeout: 200 });
    const done = d.run();
    await waitFor(() => calls.length === 1, 'runner started');
    await d.stop();
    await done;
    expect(warnings.at(-1)).toMatch(/stopped without waiting for 1 runner/);
  });

  it('handles SIGINT/SIGTERM/SIGQUIT when asked to, and removes its handlers', async () => {
    await startFake();
    const { d } = makeDispatcher(crunchRunLike, { handleSignals: true });
    const before = process.listenerCount('SIGQUIT');
    const done = d.run();
    expect(process.listenerCount('SIGQUIT')).toBe(before + 1);
    await waitFor(() => d.status.cycles >= 1, 'a cycle');
    process.emit('SIGQUIT', 'SIGQUIT');
    await done;
    expect(process.listenerCount('SIGQUIT')).toBe(before);
  });
});
