/**
 * The scheduling rules, synchronously: `plan()` over plain snapshots and
 * holdings (priority order, maxJobs, the runner's capacity, the supervisor
 * cap, failure back-off, minRetryPeriod, API back-pressure, the
 * configuration-error pause, a hold), and the rule keepers the Dispatcher
 * feeds it (Throttle, RetryBackoff, ApiPressure) on a TestClock. No HTTP,
 * no timers: hundreds of cases in well under a second.
 */
import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { ApiPressure } from '../../src/dispatcher/pressure.js';
import { byPriority, plan, type Holdings, type Snapshot } from '../../src/dispatcher/scheduler.js';
import { RetryBackoff, Throttle } from '../../src/dispatcher/throttle.js';
import { TestClock } from '../../src/testing/index.js';
import type { Container } from '../../src/types.js';

const NOW = Date.UTC(2026, 0, 1);

function uuid(n: number): string {
  return `zzzzz-dz642-${String(n).padStart(15, '0')}`;
}

function queued(n: number, priority: number, extra: Partial<Container> = {}): Container {
  return { uuid: uuid(n), state: 'Queued', priority, locked_by_uuid: null, created_at: `2026-01-01T00:00:${String(n % 60).padStart(2, '0')}Z`, ...extra };
}

function supervisor(n: number, priority: number): Container {
  return queued(n, priority, { scheduling_parameters: { supervisor: true } });
}

function holdings(h: Partial<Holdings> = {}): Holdings {
  return { running: 0, supervisors: 0, maxJobs: Infinity, maxSupervisors: Infinity, retryIn: () => 0, mayAttempt: () => true, ...h };
}

function snap(records: Container[]): Snapshot {
  return { records, complete: true };
}

const uuids = (cs: ReadonlyArray<Readonly<Container>>): string[] => cs.map((c) => c.uuid);
const whys = (p: ReturnType<typeof plan>): Record<string, string> => Object.fromEntries(p.waiting.map((w) => [w.container.uuid, w.why]));

describe('plan(): priority order', () => {
  it('locks highest priority first', () => {
    const p = plan(snap([queued(1, 1), queued(2, 500), queued(3, 10)]), holdings(), NOW);
    expect(uuids(p.lock)).toEqual([uuid(2), uuid(3), uuid(1)]);
    expect(p.waiting).toEqual([]);
    expect(p.atQuota).toBe(false);
  });

  it('orders equal priorities oldest first, then by uuid', () => {
    const a = queued(1, 5, { created_at: '2026-01-02T00:00:00Z' });
    const b = queued(2, 5, { created_at: '2026-01-01T00:00:00Z' });
    const c = queued(3, 5, { created_at: '2026-01-01T00:00:00Z' });
    expect(uuids(plan(snap([a, c, b]), holdings(), NOW).lock)).toEqual([uuid(2), uuid(3), uuid(1)]);
    expect(byPriority(b, b)).toBe(0);
  });

  it('does not change the snapshot it is given', () => {
    const records = [queued(1, 1), queued(2, 2)];
    plan(snap(records), holdings(), NOW);
    expect(uuids(records)).toEqual([uuid(1), uuid(2)]);
  });

  it('an empty queue plans nothing and asks the runner nothing', () => {
    let asked = 0;
    const p = plan(snap([]), holdings({ capacity: () => (asked++, 0) }), NOW);
    expect(p).toEqual({ lock: [], waiting: [], atQuota: false, stopped: 0 });
    expect(asked).toBe(0);
  });
});

describe('plan(): room (maxJobs and the runner capacity)', () => {
  it.each([
    [4, 0, 10, 4],
    [4, 3, 10, 1],
    [4, 4, 10, 0],
    [4, 6, 10, 0],
    [1, 0, 1, 1],
    [10, 2, 3, 3],
  ])('maxJobs %i with %i running and %i queued locks %i', (maxJobs, running, n, locked) => {
    const records = Array.from({ length: n }, (_, i) => queued(i + 1, 100 - i));
    const p = plan(snap(records), holdings({ maxJobs, running }), NOW);
    expect(uuids(p.lock)).toEqual(uuids(records.slice(0, locked)));
    expect(p.atQuota).toBe(locked < n);
    for (const w of p.waiting) expect(w.why).toBe(`at max-jobs (${maxJobs})`);
  });

  it('the runner capacity narrows the room, rounded down, never below 0', () => {
    const records = [queued(1, 3), queued(2, 2), queued(3, 1)];
    for (const [cap, locked] of [[0, 0], [1.9, 1], [-5, 0], [2, 2], [99, 3]] as const) {
      const p = plan(snap(records), holdings({ capacity: () => cap }), NOW);
      expect(p.lock.length).toBe(locked);
      if (locked < 3) expect(p.waiting[0].why).toBe('the runner has no free capacity');
    }
  });

  it('maxJobs wins when it is the tighter bound', () => {
    const p = plan(snap([queued(1, 3), queued(2, 2), queued(3, 1)]), holdings({ maxJobs: 1, capacity: () => 2 }), NOW);
    expect(p.lock.length).toBe(1);
    expect(p.waiting.map((w) => w.why)).toEqual(['at max-jobs (1)', 'at max-jobs (1)']);
  });

  it('the runner is asked about the eligible containers only, in lock order', () => {
    let seen: string[] = [];
    const records = [queued(1, 1), queued(2, 9), queued(3, 5)];
    plan(snap(records), holdings({ retryIn: (u) => (u === uuid(3) ? 1000 : 0), capacity: (e) => ((seen = uuids(e)), undefined) }), NOW);
    expect(seen).toEqual([uuid(2), uuid(1)]);
  });

  it('an undefined capacity leaves the room to maxJobs', () => {
    const p = plan(snap([queued(1, 1), queued(2, 2)]), holdings({ capacity: () => undefined }), NOW);
    expect(p.lock.length).toBe(2);
  });
});

describe('plan(): the supervisor cap', () => {
  it('skips supervisors beyond the cap, and the containers behind them still go', () => {
    const records = [supervisor(1, 9), supervisor(2, 8), queued(3, 7), supervisor(4, 6), queued(5, 5)];
    const p = plan(snap(records), holdings({ maxJobs: 10, maxSupervisors: 2, supervisors: 1 }), NOW);
    expect(uuids(p.lock)).toEqual([uuid(1), uuid(3), uuid(5)]);
    expect(whys(p)).toEqual({ [uuid(2)]: 'at the supervisor cap (2 of max-jobs 10)', [uuid(4)]: 'at the supervisor cap (2 of max-jobs 10)' });
    expect(p.atQuota).toBe(false);
  });

  it('a skipped supervisor takes no room', () => {
    const p = plan(snap([supervisor(1, 9), queued(2, 1)]), holdings({ maxJobs: 1, maxSupervisors: 1, supervisors: 1 }), NOW);
    expect(uuids(p.lock)).toEqual([uuid(2)]);
  });

  it('without a cap supervisors are like any container', () => {
    const p = plan(snap([supervisor(1, 9), supervisor(2, 8)]), holdings({ supervisors: 50 }), NOW);
    expect(p.lock.length).toBe(2);
  });
});

describe('plan(): what holds containers back whatever the room', () => {
  it('back-off after a failure: waits with the seconds left (rounded up), and takes no room', () => {
    const p = plan(snap([queued(1, 9), queued(2, 1)]), holdings({ maxJobs: 1, retryIn: (u) => (u === uuid(1) ? 1_001 : 0) }), NOW);
    expect(uuids(p.lock)).toEqual([uuid(2)]);
    expect(whys(p)).toEqual({ [uuid(1)]: 'retrying in 2 s after a failure' });
    expect(p.atQuota).toBe(false);
  });

  it('minRetryPeriod: waits and takes no room', () => {
    const p = plan(snap([queued(1, 9), queued(2, 1)]), holdings({ maxJobs: 1, mayAttempt: (u) => u !== uuid(1) }), NOW);
    expect(uuids(p.lock)).toEqual([uuid(2)]);
    expect(whys(p)).toEqual({ [uuid(1)]: 'min-retry-period has not passed' });
  });

  it('API back-pressure: nothing is locked until the pause ends', () => {
    const records = [queued(1, 2), queued(2, 1)];
    const paused = plan(snap(records), holdings({ apiPausedUntil: NOW + 1 }), NOW);
    expect(paused.lock).toEqual([]);
    expect(paused.waiting.map((w) => w.why)).toEqual(['locking paused: the API is overloaded', 'locking paused: the API is overloaded']);
    expect(paused.stopped).toBe(0);
    expect(plan(snap(records), holdings({ apiPausedUntil: NOW }), NOW).lock.length).toBe(2);
  });

  it('a configuration error stops locking for good, and those waiting do not count against idleness', () => {
    const p = plan(snap([queued(1, 2), queued(2, 1)]), holdings({ paused: 'config error: no crunch-run', held: 'the cluster lock is not ours', apiPausedUntil: NOW + 5 }), NOW);
    expect(p.lock).toEqual([]);
    expect(p.waiting.map((w) => w.why)).toEqual(['locking stopped: config error: no crunch-run', 'locking stopped: config error: no crunch-run']);
    expect(p.stopped).toBe(2);
  });

  it('a hold (e.g. the cluster lock) keeps everything waiting with its reason, ahead of back-pressure', () => {
    const p = plan(snap([queued(1, 2)]), holdings({ held: 'waiting for the cluster lock', apiPausedUntil: NOW + 5 }), NOW);
    expect(p.lock).toEqual([]);
    expect(p.waiting[0].why).toBe('waiting for the cluster lock');
    expect(p.stopped).toBe(0);
  });

  it('lists the waiting in priority order whatever held each back', () => {
    const records = [queued(1, 1), queued(2, 5), queued(3, 3), queued(4, 4)];
    const p = plan(snap(records), holdings({ maxJobs: 1, retryIn: (u) => (u === uuid(4) ? 500 : 0), mayAttempt: (u) => u !== uuid(3) }), NOW);
    expect(uuids(p.lock)).toEqual([uuid(2)]);
    expect(uuids(p.waiting.map((w) => w.container))).toEqual([uuid(4), uuid(3), uuid(1)]);
  });
});

describe('plan(): properties', () => {
  const arb = fc.record({
    cs: fc.array(fc.record({ priority: fc.integer({ min: 1, max: 5 }), sup: fc.boolean(), retry: fc.boolean(), throttled: fc.boolean() }), { maxLength: 30 }),
    maxJobs: fc.oneof(fc.constant(Infinity), fc.integer({ min: 1, max: 20 })),
    running: fc.integer({ min: 0, max: 25 }),
    maxSupervisors: fc.oneof(fc.constant(Infinity), fc.integer({ min: 1, max: 5 })),
    supervisors: fc.integer({ min: 0, max: 6 }),
    cap: fc.option(fc.integer({ min: -2, max: 30 }), { nil: undefined }),
    paused: fc.option(fc.constant('config error: x'), { nil: undefined }),
    held: fc.option(fc.constant('held'), { nil: undefined }),
    apiPause: fc.option(fc.integer({ min: -1000, max: 1000 }), { nil: undefined }),
  });

  it('every candidate is either locked or waiting, once; the locks fit the room and keep priority order', () => {
    fc.assert(
      fc.property(arb, (a) => {
        const records = a.cs.map((c, i) => (c.sup ? supervisor(i + 1, c.priority) : queued(i + 1, c.priority)));
        const flags = new Map(records.map((r, i) => [r.uuid, a.cs[i]]));
        const h = holdings({
          maxJobs: a.maxJobs,
          running: a.running,
          maxSupervisors: a.maxSupervisors,
          supervisors: a.supervisors,
          paused: a.paused,
          held: a.held,
          apiPausedUntil: a.apiPause === undefined ? undefined : NOW + a.apiPause,
          retryIn: (u) => (flags.get(u)!.retry ? 1 : 0),
          mayAttempt: (u) => !flags.get(u)!.throttled,
          capacity: () => a.cap,
        });
        const p = plan(snap(records), h, NOW);
        const all = [...uuids(p.lock), ...uuids(p.waiting.map((w) => w.container))];
        expect(all.sort()).toEqual(uuids(records).sort());
        const room = Math.max(0, Math.min(a.maxJobs - a.running, a.cap === undefined ? Infinity : Math.floor(a.cap)));
        expect(p.lock.length).toBeLessThanOrEqual(room);
        const sorted = [...p.lock].sort(byPriority);
        expect(uuids(p.lock)).toEqual(uuids(sorted));
        for (const c of p.lock) {
          expect(flags.get(c.uuid)!.retry || flags.get(c.uuid)!.throttled).toBe(false);
        }
        const newSupervisors = p.lock.filter((c) => c.scheduling_parameters?.supervisor).length;
        if (newSupervisors > 0) expect(a.supervisors + newSupervisors).toBeLessThanOrEqual(a.maxSupervisors);
        const blocked = a.paused !== undefined || a.held !== undefined || (a.apiPause !== undefined && a.apiPause > 0);
        if (blocked) expect(p.lock).toEqual([]);
        expect(p.stopped).toBe(a.paused !== undefined ? records.length : 0);
        const waitingSorted = [...p.waiting].sort((x, y) => byPriority(x.container, y.container));
        expect(p.waiting).toEqual(waitingSorted);
      }),
      { numRuns: 300, seed: 2026 },
    );
  });

  it('with nothing holding anything back, the locks are the top of the queue', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 1000 }), { maxLength: 40 }), fc.integer({ min: 1, max: 50 }), (prios, maxJobs) => {
        const records = prios.map((p, i) => queued(i + 1, p));
        const p = plan(snap(records), holdings({ maxJobs }), NOW);
        expect(uuids(p.lock)).toEqual(uuids([...records].sort(byPriority).slice(0, maxJobs)));
        expect(p.atQuota).toBe(records.length > maxJobs);
      }),
      { numRuns: 200, seed: 2027 },
    );
  });
});

describe('the rule keepers on a TestClock', () => {
  it('minRetryPeriod: one attempt per period; asking does not record', () => {
    const clock = new TestClock(0);
    const t = new Throttle(1_000, () => clock.now());
    expect(t.allows('a')).toBe(true);
    expect(t.allows('a')).toBe(true);
    expect(t.check('a')).toBe(true);
    expect(t.allows('a')).toBe(false);
    expect(t.check('a')).toBe(false);
    expect(t.allows('a', 999)).toBe(false);
    expect(t.allows('a', 1_000)).toBe(true);
    expect(new Throttle(0, () => clock.now()).allows('a')).toBe(true);
  });

  it('failure back-off doubles up to its cap, and a success forgets it', async () => {
    const clock = new TestClock(0);
    const b = new RetryBackoff(1_000, 8_000, () => clock.now());
    expect([1, 2, 3, 4, 5].map(() => b.failed('a'))).toEqual([1_000, 2_000, 4_000, 8_000, 8_000]);
    expect(b.ready('a')).toBe(false);
    expect(b.remaining('a')).toBe(8_000);
    await clock.advance(7_999);
    expect(b.remaining('a')).toBe(1);
    await clock.advance(1);
    expect(b.ready('a')).toBe(true);
    b.succeeded('a');
    expect(b.failed('a')).toBe(1_000);
  });

  it('API pressure halves the lock concurrency per overload answer and pauses locking; successes restore it one by one', async () => {
    const clock = new TestClock(0);
    const p = new ApiPressure(8, () => clock.now());
    expect(p.overloaded()).toBe(1_000);
    expect(p.concurrency).toBe(4);
    expect(p.pausedUntil).toBe(1_000);
    expect(p.overloaded()).toBe(2_000);
    expect(p.concurrency).toBe(2);
    expect(p.overloaded(5_000)).toBe(5_000);
    expect(p.overloaded(10_000_000)).toBe(60_000);
    expect(p.concurrency).toBe(1);
    expect(p.paused).toBe(true);
    await clock.advance(60_000);
    expect(p.paused).toBe(false);
    expect(p.pausedUntil).toBeUndefined();
    for (let i = 0; i < 10; i++) p.succeeded();
    expect(p.concurrency).toBe(8);
  });

  it('plan() reads the keepers at the time it is given', async () => {
    const clock = new TestClock(0);
    const backoff = new RetryBackoff(1_000, 60_000, () => clock.now());
    const throttle = new Throttle(500, () => clock.now());
    backoff.failed(uuid(1));
    throttle.check(uuid(2));
    const h = (): Holdings => holdings({ retryIn: (u, now) => backoff.remaining(u, now), mayAttempt: (u, now) => throttle.allows(u, now) });
    const records = [queued(1, 2), queued(2, 1)];
    expect(plan(snap(records), h(), clock.now()).lock).toEqual([]);
    expect(uuids(plan(snap(records), h(), clock.now() + 500).lock)).toEqual([uuid(2)]);
    await clock.advance(1_000);
    expect(uuids(plan(snap(records), h(), clock.now()).lock)).toEqual([uuid(1), uuid(2)]);
  });
});
