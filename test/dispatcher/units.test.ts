// The dispatcher's small parts: the latest-wins stream, the throttle, the
// failure backoff and the API back-pressure.
import { describe, expect, it } from '@jest/globals';
import { ApiPressure } from '../../src/dispatcher/pressure.js';
import { RetryBackoff, Throttle, backoffDelay } from '../../src/dispatcher/throttle.js';
import { UpdateStream } from '../../src/dispatcher/updates.js';
import type { Container } from '../../src/types.js';

const rec = (priority: number): Container => ({ uuid: 'zzzzz-dz642-000000000000001', state: 'Running', priority, locked_by_uuid: null });

describe('UpdateStream', () => {
  it('keeps only the latest record and never blocks the writer', async () => {
    const s = new UpdateStream();
    for (let i = 0; i < 1000; i++) s.push(rec(i));
    const it = s[Symbol.asyncIterator]();
    expect((await it.next()).value?.priority).toBe(999);
    const waiting = it.next();
    s.push(rec(5));
    expect((await waiting).value?.priority).toBe(5);
  });

  it('ends with a reason, drops a pending record, and aborts its signal', async () => {
    const s = new UpdateStream();
    s.push(rec(1));
    s.end('finished');
    s.push(rec(2));
    expect(s.signal.aborted).toBe(true);
    expect(s.signal.reason).toBe('finished');
    expect(s.endReason).toBe('finished');
    const seen: number[] = [];
    for await (const c of s) seen.push(c.priority);
    expect(seen).toEqual([]);
  });

  it('wakes every waiting reader when it ends', async () => {
    const s = new UpdateStream();
    const it = s[Symbol.asyncIterator]();
    const a = it.next();
    const b = it.next();
    s.end('stopped');
    expect(await a).toEqual({ value: undefined, done: true });
    expect(await b).toEqual({ value: undefined, done: true });
  });
});

describe('Throttle (ports TestThrottle)', () => {
  it('hold 0 never throttles', () => {
    const t = new Throttle(0);
    expect([t.check('u'), t.check('u')]).toEqual([true, true]);
  });

  it('a tiny hold lets the next attempt through once it has passed', () => {
    let now = 0;
    const t = new Throttle(0.000001, () => now);
    expect(t.check('u')).toBe(true);
    now += 0.001;
    expect(t.check('u')).toBe(true);
  });

  it('a long hold refuses until it passes, and a refusal does not move the clock', () => {
    let now = 1000;
    const t = new Throttle(60_000, () => now);
    expect([t.check('u'), t.check('u'), t.check('u')]).toEqual([true, false, false]);
    now += 59_999;
    expect(t.check('u')).toBe(false);
    now += 1; // exactly one hold after the first, successful check
    expect(t.check('u')).toBe(true);
    expect(t.check('u')).toBe(false);
    expect(t.check('other')).toBe(true);
  });

  it('purges entries older than the hold', () => {
    let now = 0;
    const t = new Throttle(100, () => now);
    for (let i = 0; i < 50; i++) t.check(`u${i}`);
    expect(t.size).toBe(50);
    now += 150;
    t.check('x');
    expect(t.size).toBe(1);
  });
});

describe('backoffDelay and RetryBackoff', () => {
  it('doubles from initial per failure and stops at the cap', () => {
    expect([0, 1, 2, 3, 4, 10, 100].map((n) => backoffDelay(n, 100, 1000))).toEqual([0, 100, 200, 400, 800, 1000, 1000]);
  });

  it('holds a container back after each failure, longer each time, and forgets after one cap', () => {
    let now = 0;
    const b = new RetryBackoff(100, 1000, () => now);
    expect(b.ready('u')).toBe(true);
    expect(b.failed('u')).toBe(100);
    expect(b.ready('u')).toBe(false);
    now += 100;
    expect(b.ready('u')).toBe(true);
    expect(b.failed('u')).toBe(200);
    expect(b.remaining('u')).toBe(200);
    expect(b.ready('other')).toBe(true);
    now += 200 + 1001;
    b.failed('other'); // purges entries older than one cap
    expect(b.size).toBe(1);
    expect(b.failed('u')).toBe(100);
  });
});

describe('ApiPressure', () => {
  it('halves concurrency per overload (not below 1), pauses for Retry-After or a backoff, and grows back by one per success', () => {
    let now = 1_000_000;
    const p = new ApiPressure(8, () => now);
    expect([p.concurrency, p.paused]).toEqual([8, false]);
    expect(p.overloaded(5000)).toBe(5000);
    expect([p.concurrency, p.pausedUntil]).toEqual([4, now + 5000]);
    expect(p.overloaded()).toBe(2000); // second overload in a row, no Retry-After: 1 s doubled
    p.overloaded();
    p.overloaded();
    expect(p.concurrency).toBe(1);
    expect(p.overloaded(10 * 60_000)).toBe(60_000); // capped
    now += 60_000;
    expect(p.paused).toBe(false);
    p.succeeded();
    p.succeeded();
    expect(p.concurrency).toBe(3);
    for (let i = 0; i < 10; i++) p.succeeded();
    expect(p.concurrency).toBe(8);
  });
});

describe('durations (issue 18 item 9): one bound for every library option', () => {
  it('refuses 2^31 ms or more, which a timer would turn into 1 ms', async () => {
    const { Dispatcher } = await import('../../src/dispatcher/dispatcher.js');
    const { ArvadosClient } = await import('../../src/client/client.js');
    const { LocalRunner } = await import('../../src/runners/local/index.js');
    const client = new ArvadosClient({ apiHost: 'localhost:1', apiToken: 'x' });
    const base = { client, runContainer: async () => {}, handleSignals: false };
    expect(() => new Dispatcher({ ...base, pollInterval: 2 ** 31 })).toThrow('pollInterval must be at most 2147483647 ms');
    expect(() => new Dispatcher({ ...base, shutdownTimeout: 600 * 3_600_000 })).toThrow(/shutdownTimeout must be at most/);
    expect(() => new Dispatcher({ ...base, pollInterval: 2 ** 31 - 1 })).not.toThrow();
    expect(() => new ArvadosClient({ apiHost: 'localhost:1', apiToken: 'x', timeout: 2 ** 31 })).toThrow(/timeout must be at most/);
    expect(() => new LocalRunner({ stopGrace: 2 ** 31 })).toThrow(/stopGrace must be at most/);
    client.close();
  });
});

describe('NUL in crunch-run arguments (issue 18 item 10)', () => {
  it('is refused when a runner is made, before any container', async () => {
    const { LocalRunner } = await import('../../src/runners/local/index.js');
    const { resolveBatchOptions } = await import('../../src/runners/batch/options.js');
    expect(() => new LocalRunner({ crunchRunArgs: ['a\0b'] })).toThrow(/without NUL/);
    expect(() => new LocalRunner({ crunchRunCommand: 'crunch\0run' })).toThrow(/without NUL/);
    expect(() => resolveBatchOptions({ crunchRunArgs: ['a\0b'] }, { args: [], gpuArgs: [] })).toThrow(/without NUL/);
  });
});
