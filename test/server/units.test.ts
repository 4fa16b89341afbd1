// The management server's building blocks: the token check and the health rule.
import { describe, expect, it } from '@jest/globals';
import { checkBearer } from '../../src/server/auth.js';
import { HealthMonitor } from '../../src/server/health.js';
import type { Clock } from '../../src/util/sleep.js';

describe('checkBearer', () => {
  it.each([
    [undefined, 401],
    ['', 401],
    ['Basic abc', 401],
    ['Bearer', 401],
    ['Bearer wrong', 403],
    ['Bearer s3cret-toke', 403],
    ['Bearer s3cret-tokenX', 403],
    ['Bearer s3cret-token', 'ok'],
    ['bearer s3cret-token', 'ok'],
    ['OAuth2 s3cret-token', 'ok'],
  ])('%j -> %s', (header, result) => expect(checkBearer(header, 's3cret-token')).toBe(result));
});

describe('HealthMonitor', () => {
  function clock(): Clock & { t: number } {
    const c = { t: 1_000_000, now: () => c.t, sleep: async () => {} };
    return c;
  }

  it('is OK while failures last no longer than a few intervals, then ERROR naming the poller', () => {
    const c = clock();
    const h = new HealthMonitor({ clock: c, intervals: 3, minGrace: 0 }).watch('api', 10_000).watch('scheduler', 5_000);
    h.ok('api');
    h.ok('scheduler');
    expect(h.check()).toEqual({ ok: true });
    h.failed('scheduler', 'squeue: exit status 1');
    c.t += 15_000;
    expect(h.check()).toEqual({ ok: true });
    c.t += 1;
    expect(h.check()).toEqual({ ok: false, reason: "the scheduler's status poll has failed for 15s: squeue: exit status 1" });
    h.ok('scheduler');
    expect(h.check()).toEqual({ ok: true });
  });

  it('a poller that never succeeded is ERROR after the grace', () => {
    const c = clock();
    const h = new HealthMonitor({ clock: c, minGrace: 30_000 }).watch('api', 1_000);
    c.t += 30_000;
    expect(h.check().ok).toBe(true);
    c.t += 1_000;
    expect(h.check()).toEqual({ ok: false, reason: 'the API poll has not succeeded in 31s: no successful poll yet' });
  });
});
