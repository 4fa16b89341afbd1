/**
 * The Dispatcher's scheduling rules end to end, over the in-memory
 * ContainerApi and a TestClock: no HTTP, no real timers, each poll driven
 * by advancing the clock. (The same rules over HTTPS are in
 * dispatcher.test.ts and friends; plan() alone in scheduler.test.ts.)
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { ArvadosApiError } from '../../src/client/errors.js';
import { Dispatcher, RunnerConfigError, type DispatcherOptions, type DispatcherStatus } from '../../src/index.js';
import { FakeArvados, MemoryContainerApi, TestClock } from '../../src/testing/index.js';
import type { Container } from '../../src/types.js';

const POLL = 1_000;
const running: Array<{ d: Dispatcher; done: Promise<void>; clock: TestClock; held: Map<string, Held> }> = [];

// Runners are let go, and the clock moved past any shutdown wait, so every run() ends.
afterEach(async () => {
  for (const r of running.splice(0)) {
    for (const h of [...r.held.values()]) h.finish();
    let ended = false;
    void r.d.stop().then(() => (ended = true));
    for (let i = 0; i < 100 && !ended; i++) await r.clock.advance(1_000);
    expect(ended).toBe(true);
    await r.done.catch(() => {});
  }
});

interface Held {
  uuid: string;
  finish: (err?: unknown) => void;
}

function setup(opts: Partial<DispatcherOptions> = {}) {
  const fake = new FakeArvados({ websocket: false, tls: false });
  const api = new MemoryContainerApi(fake);
  const clock = new TestClock();
  const started: string[] = [];
  const held = new Map<string, Held>();
  const d = new Dispatcher({
    api,
    clock,
    pollInterval: POLL,
    events: false,
    incremental: false,
    handleSignals: false,
    shutdownTimeout: 5_000,
    runContainer: (_d, c) =>
      new Promise<void>((resolve, reject) => {
        started.push(c.uuid);
        held.set(c.uuid, { uuid: c.uuid, finish: (err) => (held.delete(c.uuid), err === undefined ? resolve() : reject(err)) });
      }),
    ...opts,
  });
  const cycles: DispatcherStatus[] = [];
  d.on('cycle', (s) => cycles.push(s));
  /** Starts run() and waits for its first poll. */
  const start = async (): Promise<void> => {
    const done = d.run();
    running.push({ d, done, clock, held });
    await until(() => cycles.length >= 1);
  };
  /** Moves the clock one poll interval on and waits for that poll. */
  const poll = async (): Promise<void> => {
    const n = cycles.length;
    await clock.advance(POLL);
    await until(() => cycles.length > n);
  };
  /** Lets promise callbacks run until `check` holds (no time passes). */
  const until = async (check: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !check(); i++) await clock.settle();
    expect(check()).toBe(true);
  };
  const add = (priority: number, extra: Partial<Container> = {}): Container => fake.addContainer({ priority, ...extra });
  return { fake, api, clock, d, started, held, cycles, start, poll, until, add };
}

describe('Dispatcher over the in-memory API, on a TestClock', () => {
  it('locks in priority order within maxJobs, and the next one as room frees up', async () => {
    const t = setup({ maxJobs: 2 });
    const low = t.add(1);
    const high = t.add(30);
    const mid = t.add(20);
    await t.start();
    expect(t.started).toEqual([high.uuid, mid.uuid]);
    expect(t.d.status.atQuota).toBe(true);
    expect(t.d.entries().find((e) => e.container.uuid === low.uuid)?.scheduling_status).toBe('waiting: at max-jobs (2)');
    t.held.get(high.uuid)!.finish();
    await t.until(() => t.fake.store.row(high.uuid)!.state === 'Queued');
    await t.poll();
    // The freed slot goes to the highest priority Queued: the one just released (30) before low (1).
    expect(t.started.slice(2)).toEqual([high.uuid]);
    expect(t.api.calls.get('lockContainer')).toBe(3);
  });

  it('does not lock again a container whose runner failed until its back-off has passed', async () => {
    const t = setup({ failureBackoff: { initial: 5_000, max: 60_000 } });
    const c = t.add(5);
    await t.start();
    t.held.get(c.uuid)!.finish(new Error('crunch-run exited at once'));
    await t.until(() => t.fake.store.row(c.uuid)!.state === 'Queued');
    for (let i = 0; i < 4; i++) await t.poll();
    expect(t.started).toEqual([c.uuid]);
    expect(t.d.entries()[0].scheduling_status).toMatch(/^waiting: retrying in \d s after a failure$/);
    await t.poll();
    expect(t.started).toEqual([c.uuid, c.uuid]);
  });

  it('minRetryPeriod: one attempt per period, even when the runner returns at once', async () => {
    const t = setup({ minRetryPeriod: 3_000 });
    const c = t.add(5);
    await t.start();
    t.held.get(c.uuid)!.finish();
    await t.until(() => t.fake.store.row(c.uuid)!.state === 'Queued');
    await t.poll();
    await t.poll();
    expect(t.started.length).toBe(1);
    expect(t.d.entries()[0].scheduling_status).toBe('waiting: min-retry-period has not passed');
    await t.poll();
    expect(t.started.length).toBe(2);
  });

  it('an overloaded API (503) halves the lock concurrency and pauses locking for its Retry-After', async () => {
    const t = setup({ lockConcurrency: 8 });
    let overloaded = true;
    t.api.fail = (method) =>
      overloaded && method === 'lockContainer'
        ? new ArvadosApiError({ status: 503, errors: ['busy'], retryable: true, request: 'POST lock', attempts: 1, retryAfter: 2_500 })
        : undefined;
    const c = t.add(5);
    const overloads: number[] = [];
    t.d.on('api-overloaded', (_until, concurrency) => overloads.push(concurrency));
    await t.start();
    expect(overloads).toEqual([4]);
    expect(t.d.status.lockConcurrency).toBe(4);
    expect(t.d.status.pausedUntil).toBe(t.clock.now() + 2_500);
    overloaded = false;
    await t.poll();
    await t.poll();
    expect(t.started).toEqual([]);
    expect(t.d.entries()[0].scheduling_status).toBe('waiting: locking paused: the API is overloaded');
    await t.poll();
    expect(t.started).toEqual([c.uuid]);
    expect(t.d.status.lockConcurrency).toBe(5);
  });

  it('a configuration error stops locking for good; what is held goes on', async () => {
    const t = setup();
    const a = t.add(9);
    const b = t.add(8);
    const paused: string[] = [];
    t.d.on('paused', (reason) => paused.push(reason));
    await t.start();
    expect(t.started).toEqual([a.uuid, b.uuid]);
    t.held.get(a.uuid)!.finish(new RunnerConfigError('crunch-run not found'));
    await t.until(() => paused.length === 1);
    const later = t.add(50);
    await t.poll();
    await t.poll();
    expect(t.started).toEqual([a.uuid, b.uuid]);
    expect(t.d.status.paused).toMatch(/crunch-run not found/);
    expect(t.d.entries().find((e) => e.container.uuid === later.uuid)?.scheduling_status).toMatch(/^waiting: locking stopped: configuration error/);
    expect(t.held.has(b.uuid)).toBe(true);
  });

  it('adopts a container this token already holds without locking it', async () => {
    const t = setup();
    const c = t.add(3);
    t.fake.store.lock(c.uuid, t.fake.store.authenticate(t.fake.rootToken.token)!);
    await t.start();
    expect(t.started).toEqual([c.uuid]);
    expect(t.api.calls.get('lockContainer')).toBeUndefined();
  });

  it('on stop, waits for runners up to shutdownTimeout on the clock, then resolves', async () => {
    const t = setup({ shutdownTimeout: 5_000 });
    t.add(3);
    await t.start();
    const { d, done } = running.pop()!;
    void d.stop();
    let finished = false;
    void done.then(() => (finished = true));
    await t.clock.advance(4_999);
    expect(finished).toBe(false);
    await t.clock.advance(1);
    await t.until(() => finished);
    // States are left for a restart.
    expect(t.fake.store.row(t.started[0])!.state).toBe('Locked');
  });

  it('stays idle with nothing to do, and leaves no timer but the next poll', async () => {
    const t = setup();
    await t.start();
    await t.poll();
    await t.poll();
    expect(t.cycles.length).toBe(3);
    expect(t.clock.pending).toBe(1);
    expect(t.clock.nextAt).toBe(t.clock.now() + POLL);
  });
});
