// The Dispatcher as the owner of a Runner: attach and close on every path,
// capacity and maxJobs, the management snapshot, kill, idle(), and the one
// signal path.
import { describe, expect, it, jest } from '@jest/globals';
import { ArvadosClient, Dispatcher, type Runner } from '../../src/index.js';
import { deferred, waitFor } from '../helpers/wait.js';
import { crunchRunLike, drain, harness } from './setup.js';

/** A runner that records what the dispatcher does with it. */
function recordingRunner(run: Runner['runContainer'] = crunchRunLike, extra: Partial<Runner> = {}) {
  const events: string[] = [];
  const active = new Set<string>();
  const runner: Runner = {
    async attach(d) {
      events.push(`attach identified=${d.auth !== undefined}`);
    },
    async runContainer(d, c, u) {
      active.add(c.uuid);
      try {
        await run(d, c, u);
      } finally {
        active.delete(c.uuid);
      }
    },
    async close() {
      events.push(`close active=${active.size}`);
    },
    ...extra,
  };
  return { runner, events, active };
}

describe('Dispatcher with a runner: attach and close', () => {
  it('attaches once after identifying and before the first poll; closes once after runners settled', async () => {
    const h = await harness();
    const cs = h.fake.addContainers(3);
    const r = recordingRunner(async (d, c, u) => {
      await d.client.updateContainer(c.uuid, { state: 'Running' });
      await drain(u);
      await new Promise((res) => setTimeout(res, 30));
    });
    let listsAtAttach = -1;
    const attach = r.runner.attach!;
    r.runner.attach = async (d, s) => {
      listsAtAttach = h.fake.count('containers.list');
      return attach(d, s);
    };
    const { d } = h.dispatcher({ runner: r.runner });
    const done = d.run();
    await waitFor(() => cs.every((c) => h.fake.container(c.uuid)?.state === 'Running'), 'all running');
    await d.stop();
    await d.stop();
    await done;
    expect(listsAtAttach).toBe(0);
    expect(r.events).toEqual(['attach identified=true', 'close active=0']);
  });

  it('closes the runner when identifying fails, without attaching it', async () => {
    const h = await harness();
    const r = recordingRunner();
    const { d } = h.dispatcher({ runner: r.runner, token: 'v2/zzzzz-gj3su-aaaaaaaaaaaaaaa/nope' });
    await expect(d.run()).rejects.toThrow(/the API token was rejected/);
    expect(r.events).toEqual(['close active=0']);
  });

  it('rejects run() when attach rejects: nothing is locked, the runner is closed', async () => {
    const h = await harness();
    h.fake.addContainer();
    const r = recordingRunner(undefined, {
      async attach() {
        throw new Error('squeue: command not found');
      },
    });
    const { d } = h.dispatcher({ runner: r.runner });
    await expect(d.run()).rejects.toThrow('the runner could not start: squeue: command not found');
    expect(h.fake.count('containers.lock')).toBe(0);
    expect(r.events).toEqual(['close active=0']);
  });

  it('closes the runner on an AbortSignal and when stop() comes before run()', async () => {
    const h = await harness();
    const r1 = recordingRunner();
    const { d: d1 } = h.dispatcher({ runner: r1.runner });
    const ac = new AbortController();
    const done = d1.run({ signal: ac.signal });
    await waitFor(() => d1.status.cycles >= 1, 'a cycle');
    ac.abort();
    await done;
    expect(r1.events).toEqual(['attach identified=true', 'close active=0']);

    const r2 = recordingRunner();
    const { d: d2 } = h.dispatcher({ runner: r2.runner });
    void d2.stop();
    await d2.run();
    expect(r2.events).toEqual(['close active=0']);
  });

  it('refuses both or neither of runContainer and runner', () => {
    const client = new ArvadosClient({ apiHost: 'localhost:1', apiToken: 'x' });
    expect(() => new Dispatcher({ client })).toThrow(TypeError);
    expect(() => new Dispatcher({ client, runContainer: crunchRunLike, runner: recordingRunner().runner })).toThrow(TypeError);
  });
});

describe('Dispatcher: caps on containers in flight', () => {
  it('locks nothing beyond maxJobs, highest priority first as room frees up, and says why the rest wait', async () => {
    const h = await harness();
    const cs = h.fake.addContainers(5, (i) => ({ priority: (i + 1) * 10 })); // 10..50
    const finish = new Map<string, () => void>();
    const { d } = h.dispatcher({
      maxJobs: 2,
      async runContainer(disp, c, u) {
        await disp.client.updateContainer(c.uuid, { state: 'Running' });
        const done = deferred();
        finish.set(c.uuid, () => done.resolve());
        await Promise.race([done.promise, drain(u)]);
        await disp.client.updateContainer(c.uuid, { state: 'Complete', exit_code: 0 });
      },
    });
    void d.run();
    await waitFor(() => finish.size === 2, 'two running');
    const cycles = d.status.cycles;
    await waitFor(() => d.status.cycles >= cycles + 3, 'three more cycles');
    expect(h.fake.count('containers.lock')).toBe(2);
    expect([...finish.keys()]).toEqual([cs[4].uuid, cs[3].uuid]);
    expect(d.status.atQuota).toBe(true);
    const entries = d.entries();
    expect(entries.map((e) => [e.container.uuid, e.scheduling_status])).toEqual([
      [cs[4].uuid, 'running'],
      [cs[3].uuid, 'running'],
      [cs[2].uuid, 'waiting: at max-jobs (2)'],
      [cs[1].uuid, 'waiting: at max-jobs (2)'],
      [cs[0].uuid, 'waiting: at max-jobs (2)'],
    ]);
    finish.get(cs[3].uuid)!();
    await waitFor(() => finish.size === 3, 'a third');
    expect([...finish.keys()][2]).toBe(cs[2].uuid);
    for (const f of finish.values()) f();
    await waitFor(() => finish.size === 5, 'all five started');
    for (const f of finish.values()) f();
    await waitFor(() => cs.every((c) => h.fake.container(c.uuid)?.state === 'Complete'), 'all complete');
    expect(h.fake.count('containers.lock')).toBe(5);
  });

  it("respects the runner's capacity() and shows its schedulingStatus", async () => {
    const h = await harness();
    const cs = h.fake.addContainers(3);
    let free = 1;
    const release = deferred();
    const r = recordingRunner(
      async (d, c, u) => {
        free--;
        await d.client.updateContainer(c.uuid, { state: 'Running' });
        await Promise.race([release.promise, drain(u)]);
        await d.client.updateContainer(c.uuid, { state: 'Complete', exit_code: 0 });
        free++;
      },
      { capacity: () => free, schedulingStatus: (uuid) => `running ${uuid.slice(-3)} on node1` },
    );
    const { d } = h.dispatcher({ runner: r.runner });
    void d.run();
    await waitFor(() => r.active.size === 1, 'one running');
    const cycles = d.status.cycles;
    await waitFor(() => d.status.cycles >= cycles + 3, 'three more cycles');
    expect(h.fake.count('containers.lock')).toBe(1);
    const [held, ...waiting] = d.entries();
    expect(held.scheduling_status).toBe(`running ${held.container.uuid.slice(-3)} on node1`);
    expect(waiting.map((e) => e.scheduling_status)).toEqual(['waiting: the runner has no free capacity', 'waiting: the runner has no free capacity']);
    release.resolve();
    await waitFor(() => cs.every((c) => h.fake.container(c.uuid)?.state === 'Complete'), 'all complete');
  });

  it('kill(uuid, reason) cancels a held container with the reason; the runner sees its stream end', async () => {
    const h = await harness();
    const c = h.fake.addContainer();
    const ended = deferred<string | undefined>();
    const { d } = h.dispatcher({
      async runContainer(disp, ct, u) {
        await disp.client.updateContainer(ct.uuid, { state: 'Running' });
        await drain(u);
        ended.resolve(u.endReason);
      },
    });
    void d.run();
    await waitFor(() => h.fake.container(c.uuid)?.state === 'Running', 'running');
    expect(d.container(c.uuid)?.uuid).toBe(c.uuid);
    await expect(d.kill(c.uuid, 'killed by admin via the management API')).resolves.toBe('cancelled');
    expect(h.fake.container(c.uuid)).toMatchObject({ state: 'Cancelled', runtime_status: { error: 'killed by admin via the management API' } });
    expect(await ended.promise).toBe('finished');
  });
});

describe('Dispatcher.kill, as Go: the runner stops at once; a container not started ends Queued', () => {
  it('a Locked container is unlocked with the reason in its logs record, the runner is told, and it is not locked again at once', async () => {
    const h = await harness();
    const c = h.fake.addContainer();
    const kills: string[] = [];
    const r = recordingRunner(async (_d, _c, u) => drain(u), { kill: (uuid, reason) => void kills.push(`${uuid}: ${reason}`) });
    const { d } = h.dispatcher({ runner: r.runner, failureBackoff: { initial: 60_000 } });
    const finished: string[] = [];
    d.on('finished', (uuid, state) => finished.push(`${uuid} ${state}`));
    void d.run();
    await waitFor(() => h.fake.container(c.uuid)?.state === 'Locked' && d.container(c.uuid) !== undefined, 'locked and held');
    await expect(d.kill(c.uuid, 'via management API: wrong node')).resolves.toBe('unlocked');
    expect(kills).toEqual([`${c.uuid}: via management API: wrong node`]);
    expect(h.fake.container(c.uuid)).toMatchObject({ state: 'Queued', locked_by_uuid: null });
    expect(h.fake.logs.some((l) => l.object_uuid === c.uuid && l.event_type === 'dispatch' && String(l.properties?.text) === 'via management API: wrong node')).toBe(true);
    // Several polls later it is still Queued: the kill holds it back for the failure backoff.
    const locks = h.fake.count('containers.lock');
    const lists = h.fake.count('containers.list');
    await waitFor(() => h.fake.count('containers.list') >= lists + 6, 'more polls');
    expect(h.fake.count('containers.lock')).toBe(locks);
    expect(h.fake.container(c.uuid)?.state).toBe('Queued');
    expect(finished).toEqual([]);
  });

  it('a Running container is cancelled and counted as finished once', async () => {
    const h = await harness();
    const c = h.fake.addContainer();
    const kills: string[] = [];
    const r = recordingRunner(
      async (disp, ct, u) => {
        await disp.client.updateContainer(ct.uuid, { state: 'Running' });
        await drain(u);
      },
      { kill: (uuid) => void kills.push(uuid) },
    );
    const { d } = h.dispatcher({ runner: r.runner });
    const finished: string[] = [];
    d.on('finished', (uuid, state) => finished.push(`${uuid} ${state}`));
    void d.run();
    await waitFor(() => h.fake.container(c.uuid)?.state === 'Running' && d.container(c.uuid)?.state === 'Running', 'running');
    await expect(d.kill(c.uuid, 'stuck')).resolves.toBe('cancelled');
    expect(kills).toEqual([c.uuid]);
    await waitFor(() => r.active.size === 0, 'runner returned');
    expect(finished).toEqual([`${c.uuid} Cancelled`]);
  });
});

describe('Dispatcher: API back-pressure', () => {
  it('on 503 lowers lock concurrency and pauses locking, unlocks nothing, then recovers', async () => {
    const h = await harness();
    const running = h.fake.addContainer({ state: 'Running', locked_by_uuid: h.fake.rootToken.uuid, priority: 100 });
    const cs = h.fake.addContainers(6);
    h.fake.override('containers.lock', { status: 503, body: { errors: ['overloaded'] }, headers: { 'Retry-After': '0' }, times: 1 });
    const overloads: number[] = [];
    const { d } = h.dispatcher({ lockConcurrency: 4, client: h.fake.client({ retries: 0 }) });
    d.on('api-overloaded', (_until, conc) => overloads.push(conc));
    void d.run();
    await waitFor(() => overloads.length === 1, 'an overload');
    expect(overloads).toEqual([2]);
    await waitFor(() => cs.every((c) => h.fake.container(c.uuid)?.state === 'Locked'), 'all locked after the pause');
    await waitFor(() => d.status.lockConcurrency === 4, 'concurrency back to 4');
    expect(h.fake.count('containers.unlock')).toBe(0);
    expect(h.fake.container(running.uuid)?.state).toBe('Running');
  });
});

describe('Dispatcher: idle()', () => {
  it('resolves once what was queued before the call has been run and released', async () => {
    const h = await harness();
    const { d } = h.dispatcher({
      async runContainer(disp, c) {
        await disp.client.updateContainer(c.uuid, { state: 'Running' });
        await new Promise((r) => setTimeout(r, 50));
        // Left Running on purpose: the dispatcher's cleanup cancels it.
      },
    });
    void d.run();
    await waitFor(() => d.status.cycles >= 1, 'a cycle');
    const cs = h.fake.addContainers(4);
    let idleEvents = 0;
    d.on('idle', () => idleEvents++);
    await d.idle();
    expect(cs.map((c) => h.fake.container(c.uuid)?.state)).toEqual(['Cancelled', 'Cancelled', 'Cancelled', 'Cancelled']);
    expect(d.status).toMatchObject({ runners: 0 });
    expect(idleEvents).toBe(1);
  });

  it('resolves when run() has finished', async () => {
    const h = await harness();
    h.fake.addContainer();
    const { d } = h.dispatcher({ runContainer: () => new Promise<void>(() => {}), shutdownTimeout: 0 });
    void d.run();
    await waitFor(() => d.status.runners === 1, 'runner started');
    const idle = d.idle();
    await d.stop();
    await expect(idle).resolves.toBeUndefined();
  });
});

describe('Dispatcher: the one signal path', () => {
  it("emits 'signal' with a count; the first stops, a second stops waiting for runners", async () => {
    const h = await harness();
    h.fake.addContainer();
    const { d, warnings } = h.dispatcher({ handleSignals: true, shutdownTimeout: 600_000, runContainer: () => new Promise<void>(() => {}) });
    const seen: string[] = [];
    d.on('signal', (sig, n) => seen.push(`${sig} ${n}`));
    const done = d.run();
    await waitFor(() => d.status.runners === 1, 'runner started');
    process.emit('SIGTERM', 'SIGTERM');
    await waitFor(() => seen.length === 1, 'first signal');
    process.emit('SIGINT', 'SIGINT');
    await done;
    expect(seen).toEqual(['SIGTERM 1', 'SIGINT 2']);
    expect(warnings.at(-1)).toMatch(/stopped without waiting for 1 runner/);
  });

  it("with secondSignal 'exit', a second signal exits with status 1 after the listeners ran", async () => {
    const h = await harness();
    h.fake.addContainer();
    const { d } = h.dispatcher({ handleSignals: true, secondSignal: 'exit', shutdownTimeout: 300, runContainer: () => new Promise<void>(() => {}) });
    const exited = deferred<number | undefined>();
    const exit = jest.spyOn(process, 'exit').mockImplementation(((code?: number) => exited.resolve(code)) as typeof process.exit);
    try {
      const seen: number[] = [];
      d.on('signal', (_sig, n) => seen.push(n));
      const done = d.run();
      await waitFor(() => d.status.runners === 1, 'runner started');
      process.emit('SIGTERM', 'SIGTERM');
      process.emit('SIGTERM', 'SIGTERM');
      expect(await exited.promise).toBe(1);
      expect(seen).toEqual([1, 2]);
      await done;
    } finally {
      exit.mockRestore();
    }
  });
});

