// Held records: frozen deeply, equal strings shared through a bounded pool.
import { describe, expect, it } from '@jest/globals';
import { StringPool, freezeShared } from '../../src/dispatcher/freeze.js';

describe('freezeShared', () => {
  it('freezes every level and changes no value', () => {
    const rec = { uuid: 'zzzzz-dz642-000000000000001', command: ['a', 'b'], mounts: { '/tmp': { kind: 'tmp', capacity: 1 } }, n: null, ok: true };
    const copy = structuredClone(rec);
    const pool = new StringPool();
    expect(freezeShared(rec, pool)).toBe(rec);
    expect(rec).toEqual(copy);
    expect(Object.isFrozen(rec) && Object.isFrozen(rec.command) && Object.isFrozen(rec.mounts) && Object.isFrozen(rec.mounts['/tmp'])).toBe(true);
    expect(pool.size).toBe(4);
  });

  it('keeps the pool bounded and leaves long strings out', () => {
    const pool = new StringPool();
    for (let i = 0; i < 10_000; i++) pool.share(`s${i}`);
    expect(pool.size).toBeLessThanOrEqual(4096);
    const before = pool.size;
    expect(pool.share('x'.repeat(1000))).toBe('x'.repeat(1000));
    expect(pool.size).toBe(before);
  });

  it('leaves an object that is already frozen as it is', () => {
    const inner = Object.freeze({ s: 'a' });
    const pool = new StringPool();
    freezeShared({ inner }, pool);
    expect(pool.size).toBe(0);
  });
});
