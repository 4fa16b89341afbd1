// PollPlan on a test clock: when sweeps come, and how the watermark moves.
import { describe, expect, it } from '@jest/globals';
import { PollPlan, modifiedAtNanos } from '../../src/dispatcher/watermark.js';

function plan(opts: { sweepPolls?: number; sweepInterval?: number; margin?: number } = {}) {
  let now = 1_000_000;
  const p = new PollPlan({ sweepPolls: opts.sweepPolls ?? 10, sweepInterval: opts.sweepInterval ?? 60_000, margin: opts.margin ?? 5_000 }, () => now);
  return { p, advance: (ms: number) => (now += ms) };
}

describe('modifiedAtNanos', () => {
  it('reads the API format to the nanosecond and nothing else', () => {
    expect(modifiedAtNanos('2026-01-02T03:04:05.123456789Z')).toBe(BigInt(Date.UTC(2026, 0, 2, 3, 4, 5)) * 1_000_000n + 123_456_789n);
    expect(modifiedAtNanos('2026-01-02T03:04:05Z')).toBe(BigInt(Date.UTC(2026, 0, 2, 3, 4, 5)) * 1_000_000n);
    expect(modifiedAtNanos('2026-01-02T03:04:05.5Z')).toBe(BigInt(Date.UTC(2026, 0, 2, 3, 4, 5)) * 1_000_000n + 500_000_000n);
    for (const bad of [undefined, null, 42, '', 'yesterday', '2026-01-02 03:04:05Z', '2026-01-02T03:04:05.1234567890Z', '2026-13-02T03:04:05Z']) {
      expect(modifiedAtNanos(bad)).toBeUndefined();
    }
  });
});

describe('PollPlan', () => {
  it('starts with a sweep, then polls incrementally from the newest server time minus the margin', () => {
    const { p } = plan();
    expect(p.next()).toEqual({ kind: 'sweep', why: 'start' });
    p.next();
    p.done('sweep', true, ['2026-01-02T03:04:05.123456789Z']);
    expect(p.watermark).toBe('2026-01-02T03:04:05.123456789Z');
    expect(p.next()).toEqual({ kind: 'incremental', since: '2026-01-02T03:04:00.123456789Z' });
    // Later timestamps move it forward, earlier and malformed ones do not.
    p.done('incremental', true, ['2026-01-02T03:04:07.000000001Z', '2026-01-02T03:04:01.000000000Z', 'garbage']);
    expect(p.watermark).toBe('2026-01-02T03:04:07.000000001Z');
    p.done('incremental', true, []);
    expect(p.watermark).toBe('2026-01-02T03:04:07.000000001Z');
  });

  it('sweeps again while it has no server time (never a query without a lower bound)', () => {
    const { p } = plan();
    p.next();
    p.done('sweep', true, [undefined]);
    expect(p.next()).toEqual({ kind: 'sweep', why: 'no watermark' });
    p.next();
    p.done('sweep', true, ['not a time']);
    expect(p.next()).toEqual({ kind: 'sweep', why: 'no watermark' });
  });

  it('sweeps every sweepPolls polls or sweepInterval ms, whichever comes first', () => {
    const { p, advance } = plan({ sweepPolls: 3, sweepInterval: 10_000 });
    p.next();
    p.done('sweep', true, ['2026-01-02T03:04:05Z']);
    expect(p.next().kind).toBe('incremental');
    p.done('incremental', true, []);
    expect(p.next().kind).toBe('incremental');
    p.done('incremental', true, []);
    expect(p.next()).toEqual({ kind: 'sweep', why: '3 polls' });
    p.next();
    p.done('sweep', true, ['2026-01-02T03:04:05Z']);
    expect(p.next().kind).toBe('incremental');
    advance(10_000);
    expect(p.next()).toEqual({ kind: 'sweep', why: '10000 ms' });
  });

  it('sweeps after an incomplete poll, and keeps the watermark until then', () => {
    const { p } = plan();
    p.next();
    p.done('sweep', true, ['2026-01-02T03:04:05Z']);
    p.done('incremental', false, ['2026-01-02T03:09:00Z']);
    expect(p.watermark).toBe('2026-01-02T03:04:05.000000000Z');
    expect(p.next()).toEqual({ kind: 'sweep', why: 'the last poll was incomplete' });
    // An incomplete sweep is followed by another.
    p.next();
    p.done('sweep', false, ['2026-01-02T03:09:00Z']);
    expect(p.next().kind).toBe('sweep');
    p.next();
    p.done('sweep', true, ['2026-01-02T03:09:00Z']);
    expect(p.next().kind).toBe('incremental');
  });

  it('sweeps when forced (an event stream reconnection), keeping the first reason', () => {
    const { p } = plan();
    p.next();
    p.done('sweep', true, ['2026-01-02T03:04:05Z']);
    p.forceSweep('the event stream (re)connected');
    p.forceSweep('something else');
    expect(p.next()).toEqual({ kind: 'sweep', why: 'the event stream (re)connected' });
  });

  it('sweeps again when a sweep is asked for while one runs', () => {
    const { p } = plan();
    expect(p.next().kind).toBe('sweep');
    p.forceSweep('the event stream (re)connected');
    p.done('sweep', true, ['2026-01-02T03:04:05Z']);
    expect(p.next()).toEqual({ kind: 'sweep', why: 'the event stream (re)connected' });
    p.done('sweep', true, ['2026-01-02T03:04:05Z']);
    expect(p.next().kind).toBe('incremental');
  });

  it('takes a sweep\'s watermark afresh, so a wrong far-future time lasts one sweep period at most', () => {
    const { p } = plan();
    p.next();
    p.done('sweep', true, ['2999-01-01T00:00:00Z']);
    p.done('incremental', true, []);
    expect(p.watermark).toBe('2999-01-01T00:00:00.000000000Z');
    p.next();
    p.done('sweep', true, ['2026-01-02T03:04:05Z']);
    expect(p.watermark).toBe('2026-01-02T03:04:05.000000000Z');
  });
});
