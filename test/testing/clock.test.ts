/**
 * TestClock and the clock-driven timers (`after`, `timeoutSignal`): time
 * moves only when the test advances it, sleeps end in due order, and an
 * aborted sleep or cancelled timer never fires.
 */
import { describe, expect, it } from '@jest/globals';
import { TestClock } from '../../src/testing/index.js';
import { after, realClock, timeoutSignal } from '../../src/util/sleep.js';

describe('TestClock', () => {
  it('stands still until advanced, then ends sleeps in due order at their own time', async () => {
    const clock = new TestClock(1_000);
    const woke: Array<[string, number]> = [];
    void clock.sleep(300).then(() => woke.push(['b', clock.now()]));
    void clock.sleep(100).then(() => woke.push(['a', clock.now()]));
    void clock.sleep(300).then(() => woke.push(['c', clock.now()]));
    expect(clock.pending).toBe(3);
    expect(clock.nextAt).toBe(1_100);
    await clock.advance(99);
    expect(woke).toEqual([]);
    expect(clock.now()).toBe(1_099);
    await clock.advance(1_000);
    expect(woke).toEqual([['a', 1_100], ['b', 1_300], ['c', 1_300]]);
    expect(clock.now()).toBe(2_099);
    expect(clock.pending).toBe(0);
    expect(clock.nextAt).toBeUndefined();
  });

  it('ends sleeps that woken code starts within the same advance', async () => {
    const clock = new TestClock(0);
    const ticks: number[] = [];
    void (async () => {
      for (let i = 0; i < 5; i++) {
        await clock.sleep(10);
        ticks.push(clock.now());
      }
    })();
    await clock.advance(35);
    expect(ticks).toEqual([10, 20, 30]);
    expect(await clock.next()).toBe(true);
    expect(ticks).toEqual([10, 20, 30, 40]);
  });

  it('rejects an aborted sleep with the reason and drops it', async () => {
    const clock = new TestClock(0);
    const ac = new AbortController();
    const p = clock.sleep(50, ac.signal);
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(clock.pending).toBe(0);
    await expect(clock.sleep(1, ac.signal)).rejects.toThrow('stop');
    expect(await clock.next()).toBe(false);
  });

  it('refuses to go backwards', async () => {
    await expect(new TestClock().advance(-1)).rejects.toThrow(RangeError);
  });

  it('starts at a fixed moment by default', () => {
    expect(new TestClock().now()).toBe(Date.UTC(2026, 0, 1));
  });
});

describe('clock timers', () => {
  it('after() fires at its time, and not once cancelled', async () => {
    const clock = new TestClock(0);
    const fired: string[] = [];
    after(clock, 10, () => fired.push('kept'));
    const cancel = after(clock, 5, () => fired.push('cancelled'));
    cancel();
    await clock.advance(10);
    expect(fired).toEqual(['kept']);
    expect(clock.pending).toBe(0);
  });

  it('timeoutSignal() aborts with a TimeoutError at its time, and cancel() leaves no timer', async () => {
    const clock = new TestClock(0);
    const t = timeoutSignal(clock, 100);
    await clock.advance(99);
    expect(t.signal.aborted).toBe(false);
    await clock.advance(1);
    expect(t.signal.aborted).toBe(true);
    expect((t.signal.reason as DOMException).name).toBe('TimeoutError');
    const u = timeoutSignal(clock, 100);
    u.cancel();
    expect(clock.pending).toBe(0);
    await clock.advance(200);
    expect(u.signal.aborted).toBe(false);
  });

  it('the real clock reads Date.now()', () => {
    const before = Date.now();
    const now = realClock.now();
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
  });
});
