// The management server's building blocks: the token check and the health rule.
import { describe, expect, it } from '@jest/globals';
import { checkBearer } from '../../src/server/auth.js';
import { HealthMonitor } from '../../src/server/health.js';
import { registerVersionMetrics } from '../../src/server/version-metrics.js';
import { Registry } from 'prom-client';
import { parseExposition } from '../helpers/prometheus.js';
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

describe('registerVersionMetrics', () => {
  it('exports the version always, and the config gauges only when a config file was read', async () => {
    const bare = new Registry();
    registerVersionMetrics(bare, '1.2.3');
    const b = parseExposition(await bare.metrics());
    expect(b.samples).toEqual([{ name: 'arvados_version_running', labels: { version: '1.2.3' }, value: 1 }]);
    expect(b.types.get('arvados_version_running')).toBe('gauge');

    const withConfig = new Registry();
    registerVersionMetrics(withConfig, '1.2.3', { sha256: 'ab'.repeat(32), mtimeMs: 1_700_000_000_250, loadedAtMs: 1_700_000_100_500 });
    const c = parseExposition(await withConfig.metrics());
    expect(c.value('arvados_config_load_timestamp_seconds')).toBe(1_700_000_100.5);
    expect(c.value('arvados_config_source_timestamp_seconds', { sha256: 'ab'.repeat(32) })).toBe(1_700_000_000.25);
  });
});
