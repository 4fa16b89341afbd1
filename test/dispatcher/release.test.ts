// Dispatcher.release: the one way a container is let go of. Its behaviour on
// every state, its idempotence, the runtime_status rule and the logs record,
// each checked on the fake's records and the API calls made.
import { describe, expect, it } from '@jest/globals';
import { Dispatcher, RunnerConfigError, type Container } from '../../src/index.js';
import { FakeArvados, MemoryContainerApi, TestClock } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';
import { harness } from './setup.js';

/** A running dispatcher past its first poll (60 s interval: no second poll sees what tests add). */
async function identified(): Promise<{ fake: FakeArvados; d: Dispatcher; warnings: string[] }> {
  const h = await harness();
  const { d, warnings } = h.dispatcher({ pollInterval: 60_000 });
  void d.run();
  await waitFor(() => d.status.cycles >= 1, 'first cycle');
  return { fake: h.fake, d, warnings };
}

const mutations = (fake: FakeArvados, uuid: string) =>
  fake.requests.filter((r) => r.uuid === uuid && ['containers.update', 'containers.unlock', 'containers.lock'].includes(r.route));
const logsOf = (fake: FakeArvados, uuid: string) => fake.logs.filter((l) => l.object_uuid === uuid);

describe('Dispatcher.release on each state', () => {
  it('unlocks a Locked container of ours (the unlock endpoint, no PUT) and writes one dispatch log', async () => {
    const { fake, d } = await identified();
    const c = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    const released: string[] = [];
    d.on('released', (uuid, action, state) => released.push(`${uuid} ${action} ${state}`));
    await expect(d.release(c.uuid, { reason: 'crunch-run exited', detail: 'last line' })).resolves.toBe('unlocked');
    expect(fake.container(c.uuid)).toMatchObject({ state: 'Queued', locked_by_uuid: null });
    expect(mutations(fake, c.uuid).map((r) => r.route)).toEqual(['containers.unlock']);
    expect(logsOf(fake, c.uuid)).toEqual([expect.objectContaining({ event_type: 'dispatch', properties: { text: 'crunch-run exited\nlast line' } })]);
    expect(released).toEqual([`${c.uuid} unlocked Locked`]);
  });

  it('cancels a Locked container with cancel: true, with error and errorDetail', async () => {
    const { fake, d } = await identified();
    const c = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    await expect(d.release(c.uuid, { reason: 'can never fit here', error: new Error('needs 16 vCPUs'), cancel: true })).resolves.toBe('cancelled');
    expect(fake.container(c.uuid)).toMatchObject({ state: 'Cancelled', runtime_status: { error: 'can never fit here', errorDetail: 'needs 16 vCPUs' } });
    expect(logsOf(fake, c.uuid)[0]?.properties.text).toBe('can never fit here: needs 16 vCPUs');
  });

  it('cancels a Running container of ours (it cannot go back to Queued) and sets runtime_status.error', async () => {
    const { fake, d } = await identified();
    const c = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    await expect(d.release(c.uuid, { reason: 'crunch-run died' })).resolves.toBe('cancelled');
    expect(fake.container(c.uuid)).toMatchObject({ state: 'Cancelled', runtime_status: { error: 'crunch-run died' } });
    expect(fake.container(c.uuid)?.runtime_status).not.toHaveProperty('errorDetail');
  });

  it('keeps an error already in runtime_status exactly as it is', async () => {
    const { fake, d } = await identified();
    const c = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid, runtime_status: { error: 'out of memory', errorDetail: 'oom-killer' } });
    await d.release(c.uuid, { reason: 'crunch-run died', error: new Error('exit 137') });
    expect(fake.container(c.uuid)).toMatchObject({ state: 'Cancelled', runtime_status: { error: 'out of memory', errorDetail: 'oom-killer' } });
  });

  it("does nothing ('none', no log, no change) to Queued, Complete, Cancelled, deleted containers and another token's", async () => {
    const { fake, d } = await identified();
    const other = fake.addToken();
    const cs: Container[] = [
      fake.addContainer({ state: 'Queued' }),
      fake.addContainer({ state: 'Locked', locked_by_uuid: other.uuid }),
      fake.addContainer({ state: 'Running', locked_by_uuid: other.uuid }),
    ];
    const done = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    fake.completeContainer(done.uuid);
    const cancelled = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    fake.cancelContainer(cancelled.uuid);
    const gone = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    fake.deleteContainer(gone.uuid);
    for (const c of [...cs, done, cancelled, gone]) {
      await expect(d.release(c.uuid, { reason: 'r', cancel: true })).resolves.toBe('none');
      expect(mutations(fake, c.uuid)).toEqual([]);
      expect(logsOf(fake, c.uuid)).toEqual([]);
    }
    expect(fake.container(cs[1].uuid)).toMatchObject({ state: 'Locked', locked_by_uuid: other.uuid });
  });

  it('rejects a malformed uuid without any request', async () => {
    const { fake, d } = await identified();
    const before = fake.count();
    await expect(d.release('zzzzz-dz642-../../x', { reason: 'r' })).rejects.toThrow(TypeError);
    expect(fake.count()).toBe(before);
  });
});

describe('Dispatcher.release: idempotence', () => {
  it('shares one promise between concurrent calls, and a later call finds nothing to do', async () => {
    const { fake, d } = await identified();
    const c = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    const a = d.release(c.uuid, { reason: 'first' });
    const b = d.release(c.uuid, { reason: 'second', cancel: true });
    expect(b).toBe(a);
    await expect(a).resolves.toBe('cancelled');
    await expect(d.release(c.uuid, { reason: 'third' })).resolves.toBe('none');
    expect(fake.count('containers.get')).toBe(2);
    expect(mutations(fake, c.uuid)).toHaveLength(1);
    expect(logsOf(fake, c.uuid).map((l) => l.properties.text)).toEqual(['first']);
    expect(fake.container(c.uuid)?.runtime_status).toMatchObject({ error: 'first' });
  });

  it('rejects when the API fails, and works when called again', async () => {
    const { fake, d } = await identified();
    const c = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    fake.override('containers.unlock', { status: 500, body: { errors: ['boom'] }, times: 10 });
    await expect(d.release(c.uuid, { reason: 'r' })).rejects.toThrow(/boom/);
    fake.clearOverride();
    await expect(d.release(c.uuid, { reason: 'r' })).resolves.toBe('unlocked');
  });
});

describe('Dispatcher.release: secrets', () => {
  it('redacts the token from the log text, error and errorDetail before cutting them', async () => {
    const { fake, d } = await identified();
    const token = fake.rootToken.token;
    const c = fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    // The token straddles every cut: the log text (16 000), error (1 000) and errorDetail (4 000).
    const pad = (n: number) => 'x'.repeat(n);
    const reason = `${pad(990)}${token}`;
    const error = new Error(`${pad(3990)} Authorization: Bearer ${token} ${token}`);
    await d.release(c.uuid, { reason, error, detail: `${pad(15_000)}${token}${pad(100)}` });
    const rs = fake.container(c.uuid)!.runtime_status as Record<string, string>;
    const text = String(logsOf(fake, c.uuid)[0].properties.text);
    for (const out of [rs.error, rs.errorDetail, text]) {
      for (let i = 0; i + 8 <= token.length; i++) expect(out).not.toContain(token.slice(i, i + 8));
    }
    expect(rs.error.length).toBeLessThanOrEqual(1000);
    expect(text.length).toBeLessThanOrEqual(16_000);
  });
});

describe('Dispatcher.release: failures and configuration errors', () => {
  it('delays the next lock of a container unlocked after its own failure (exponential backoff)', async () => {
    // In memory, on a test clock: the lock times are exact, whatever the load.
    const fake = new FakeArvados({ maxDispatchAttempts: 100, websocket: false, tls: false });
    const clock = new TestClock(0);
    const c = fake.addContainer();
    const locks: number[] = [];
    const d = new Dispatcher({
      api: new MemoryContainerApi(fake),
      clock,
      pollInterval: 25,
      events: false,
      incremental: false,
      handleSignals: false,
      failureBackoff: { initial: 200, max: 1_000 },
      async runContainer(disp, ct) {
        locks.push(clock.now());
        await disp.release(ct.uuid, { reason: 'crunch-run exited with code 1', detail: 'boom' });
      },
    });
    const done = d.run();
    while (clock.now() < 4_400) await clock.advance(25);
    // Each next lock at the poll its back-off ends on: 200 ms, doubling, capped at 1 s.
    expect(locks.slice(1).map((t, i) => t - locks[i])).toEqual([200, 400, 800, 1_000, 1_000, 1_000]);
    expect(fake.container(c.uuid)?.lock_count).toBe(locks.length);
    void d.stop();
    await clock.advance(25);
    await done;
  });

  it('stops locking after a RunnerConfigError, says so, and releases without cycling containers', async () => {
    const h = await harness({ maxDispatchAttempts: 100 });
    const cs = h.fake.addContainers(5, (i) => ({ priority: 10 - i }));
    const paused: string[] = [];
    const { d, warnings } = h.dispatcher({
      lockConcurrency: 1,
      maxJobs: 1,
      async runContainer() {
        throw new RunnerConfigError('sbatch template: unknown placeholder %Z');
      },
    });
    d.on('paused', (reason) => paused.push(reason));
    void d.run();
    await waitFor(() => paused.length === 1 && d.status.tracked === 0, 'paused and released');
    const cycles = d.status.cycles;
    await waitFor(() => d.status.cycles >= cycles + 10, 'ten more cycles');
    expect(h.fake.count('containers.lock')).toBe(1);
    expect(cs.map((c) => h.fake.container(c.uuid)?.state)).toEqual(['Queued', 'Queued', 'Queued', 'Queued', 'Queued']);
    expect(paused[0]).toMatch(/configuration error: sbatch template: unknown placeholder %Z/);
    expect(d.status.paused).toBe(paused[0]);
    expect(warnings.some((w) => /NOT LOCKING ANY MORE CONTAINERS/.test(w))).toBe(true);
    expect(d.entries().map((e) => e.scheduling_status)).toEqual(Array(5).fill(`waiting: locking stopped: ${paused[0]}`));
    await expect(d.idle()).resolves.toBeUndefined(); // nothing will change until a restart
  });
});
