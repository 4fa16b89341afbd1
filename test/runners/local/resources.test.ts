// The resource pool on its own: capacity detection, queue order (priority,
// then arrival) with head-of-line blocking, never-fits rejection, abort, release.
import os from 'node:os';
import { describe, expect, it } from '@jest/globals';
import {
  ResourcePool,
  ResourceRequestError,
  detectCapacity,
  formatBytes,
  type Allocation,
} from '../../../src/runners/local/resources.js';

const GiB = 2 ** 30;

/** Settles pending promise callbacks without waiting for time to pass. */
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Tracks a promise's outcome so a test can assert "still pending". */
function watch<T>(p: Promise<T>): { value?: T; error?: unknown; settled: boolean } {
  const s: { value?: T; error?: unknown; settled: boolean } = { settled: false };
  p.then(
    (v) => Object.assign(s, { value: v, settled: true }),
    (e: unknown) => Object.assign(s, { error: e, settled: true }),
  );
  return s;
}

describe('detectCapacity', () => {
  it('uses the CPU count, total RAM and no GPUs by default', () => {
    expect(detectCapacity({}, {})).toEqual({ vcpus: os.availableParallelism(), ram: os.totalmem(), gpus: { stack: '', ids: [] } });
  });

  it('reads CUDA_VISIBLE_DEVICES first, then AMD_VISIBLE_DEVICES', () => {
    expect(detectCapacity({}, { CUDA_VISIBLE_DEVICES: '0, 1,,3', AMD_VISIBLE_DEVICES: '7' }).gpus).toEqual({ stack: 'cuda', ids: ['0', '1', '3'] });
    expect(detectCapacity({}, { CUDA_VISIBLE_DEVICES: '', AMD_VISIBLE_DEVICES: '4,5' }).gpus).toEqual({ stack: 'rocm', ids: ['4', '5'] });
  });

  it('lets every part be overridden', () => {
    const cap = detectCapacity({ vcpus: 3, ram: 5 * GiB, gpus: { stack: 'rocm', ids: ['9'] } }, { CUDA_VISIBLE_DEVICES: '0' });
    expect(cap).toEqual({ vcpus: 3, ram: 5 * GiB, gpus: { stack: 'rocm', ids: ['9'] } });
  });

  it('refuses a capacity that makes no sense', () => {
    expect(() => new ResourcePool({ vcpus: 0 })).toThrow(/vcpus must be an integer >= 1/);
    expect(() => new ResourcePool({ ram: 0.5 })).toThrow(/ram must be/);
    expect(() => new ResourcePool({ gpus: { stack: '', ids: ['0'] } })).toThrow(/need a stack/);
    expect(() => new ResourcePool({ gpus: { stack: 'cuda', ids: ['0', '0'] } })).toThrow(/unique/);
  });
});

describe('formatBytes', () => {
  it('uses binary units with at most one decimal', () => {
    expect(formatBytes(1)).toBe('1 byte');
    expect(formatBytes(1000)).toBe('1000 bytes');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(550 * 2 ** 20)).toBe('550 MiB');
    expect(formatBytes(8 * GiB)).toBe('8 GiB');
  });
});

describe('ResourcePool', () => {
  it('allocates at once when a request fits, and takes it back on release (idempotent)', async () => {
    const pool = new ResourcePool({ vcpus: 4, ram: 8 * GiB, gpus: { stack: '', ids: [] } });
    const a = await pool.request({ vcpus: 3, ram: 6 * GiB });
    expect(pool.available).toEqual({ vcpus: 1, ram: 2 * GiB, gpus: 0 });
    a.release();
    a.release();
    expect(a.released).toBe(true);
    expect(pool.available).toEqual({ vcpus: 4, ram: 8 * GiB, gpus: 0 });
  });

  it('serves in arrival order: a later request that would fit waits behind one that does not (head-of-line)', async () => {
    const pool = new ResourcePool({ vcpus: 2, ram: 4 * GiB, gpus: { stack: '', ids: [] } });
    const a = await pool.request({ vcpus: 1, ram: GiB });
    const b = watch(pool.request({ vcpus: 2, ram: GiB }));
    const c = watch(pool.request({ vcpus: 1, ram: GiB }));
    await tick();
    // c would fit in the free vCPU but must not jump b.
    expect([b.settled, c.settled]).toEqual([false, false]);
    expect(pool.waiting).toBe(2);
    expect(pool.fitsNow({ vcpus: 1, ram: GiB })).toBe(false);
    a.release();
    await tick();
    expect([b.settled, c.settled]).toEqual([true, false]);
    (b.value as Allocation).release();
    await tick();
    expect(c.settled).toBe(true);
    expect(pool.waiting).toBe(0);
  });

  it('puts a higher-priority request ahead of lower ones, first come first served among equals', async () => {
    const pool = new ResourcePool({ vcpus: 1, ram: GiB, gpus: { stack: '', ids: [] } });
    const a = await pool.request({ vcpus: 1, ram: 1 }, undefined, 5);
    const served: string[] = [];
    const ask = (name: string, priority: number): Promise<void> =>
      pool.request({ vcpus: 1, ram: 1 }, undefined, priority).then((x) => {
        served.push(name);
        x.release();
      });
    // Arrival order low1, high1, low2, high2: as parallel locks can deliver them.
    const all = [ask('low1', 1), ask('high1', 9), ask('low2', 1), ask('high2', 9)];
    expect(pool.fitsNow({ vcpus: 1, ram: 1 }, 100)).toBe(false); // nothing is free
    a.release();
    await Promise.all(all);
    expect(served).toEqual(['high1', 'high2', 'low1', 'low2']);
  });

  it('fitsNow() is false while an equal or higher priority waits, even if the resources are free', async () => {
    const pool = new ResourcePool({ vcpus: 2, ram: GiB, gpus: { stack: '', ids: [] } });
    const a = await pool.request({ vcpus: 1, ram: 1 });
    const big = watch(pool.request({ vcpus: 2, ram: 1 }, undefined, 5));
    await tick();
    expect(big.settled).toBe(false);
    expect(pool.fitsNow({ vcpus: 1, ram: 1 }, 5)).toBe(false);
    expect(pool.fitsNow({ vcpus: 1, ram: 1 }, 6)).toBe(true);
    // A higher priority goes ahead of the waiting one and fits at once.
    const urgent = await pool.request({ vcpus: 1, ram: 1 }, undefined, 6);
    expect(big.settled).toBe(false);
    a.release();
    urgent.release();
    await tick();
    expect(big.settled).toBe(true);
  });

  it('serves several waiters at once when a release frees enough for them', async () => {
    const pool = new ResourcePool({ vcpus: 4, ram: 8 * GiB, gpus: { stack: '', ids: [] } });
    const a = await pool.request({ vcpus: 4, ram: GiB });
    const waiters = [1, 2, 1].map((vcpus) => watch(pool.request({ vcpus, ram: GiB })));
    await tick();
    expect(waiters.map((w) => w.settled)).toEqual([false, false, false]);
    a.release();
    await tick();
    expect(waiters.map((w) => w.settled)).toEqual([true, true, true]);
    expect(pool.available.vcpus).toBe(0);
  });

  it('rejects at once, naming what does not fit, a request that can never fit; it blocks nobody', async () => {
    const pool = new ResourcePool({ vcpus: 4, ram: 8 * GiB, gpus: { stack: 'cuda', ids: ['0'] } });
    const a = await pool.request({ vcpus: 4, ram: GiB });
    const big = pool.request({ vcpus: 16, ram: 9 * GiB, gpus: { count: 2, stack: 'cuda' } });
    await expect(big).rejects.toThrow(ResourceRequestError);
    const err = (await big.catch((e: unknown) => e)) as ResourceRequestError;
    expect(err.message).toBe(
      'resource request cannot be fulfilled: needs 16 vCPUs, capacity is 4; needs 9 GiB RAM, capacity is 8 GiB; needs 2 GPUs, capacity is 1',
    );
    expect(err.reasons).toHaveLength(3);
    expect(pool.waiting).toBe(0);
    const next = watch(pool.request({ vcpus: 1, ram: GiB }));
    a.release();
    await tick();
    expect(next.settled).toBe(true);
  });

  it.each([
    [{ vcpus: 0, ram: 1 }, /needs 0 vCPUs, at least 1 is required/],
    [{ vcpus: 1, ram: 0 }, /needs 0 bytes of RAM, at least 1 byte is required/],
    [{ vcpus: 1, ram: 1, gpus: { count: 1, stack: 'rocm' } }, /needs rocm GPUs, this node's GPUs are cuda/],
  ])('rejects %j', async (need, message) => {
    const pool = new ResourcePool({ vcpus: 2, ram: GiB, gpus: { stack: 'cuda', ids: ['0', '1'] } });
    await expect(pool.request(need)).rejects.toThrow(message);
  });

  it('rejects GPUs on a node without any', async () => {
    const pool = new ResourcePool({ vcpus: 2, ram: GiB, gpus: { stack: '', ids: [] } });
    await expect(pool.request({ vcpus: 1, ram: 1, gpus: { count: 1, stack: 'cuda' } })).rejects.toThrow(/needs 1 GPU \(cuda\), this node has none/);
  });

  it('hands out GPU ids in capacity order and takes them back', async () => {
    const pool = new ResourcePool({ vcpus: 8, ram: 8 * GiB, gpus: { stack: 'rocm', ids: ['3', '1', '2'] } }, {});
    const a = await pool.request({ vcpus: 1, ram: 1, gpus: { count: 2, stack: 'rocm' } });
    expect(a.gpuIds).toEqual(['3', '1']);
    expect(a.gpuStack).toBe('rocm');
    const b = await pool.request({ vcpus: 1, ram: 1, gpus: { count: 1, stack: 'rocm' } });
    expect(b.gpuIds).toEqual(['2']);
    const c = watch(pool.request({ vcpus: 1, ram: 1, gpus: { count: 2, stack: 'rocm' } }));
    await tick();
    expect(c.settled).toBe(false);
    a.release();
    await tick();
    expect(c.value?.gpuIds).toEqual(['3', '1']);
    const none = await pool.request({ vcpus: 1, ram: 1 });
    expect(none.gpuIds).toEqual([]);
    expect(none.gpuStack).toBe('');
  });

  it('removes an aborted waiter, and the ones behind it move up (no leak, no deadlock)', async () => {
    const pool = new ResourcePool({ vcpus: 2, ram: GiB, gpus: { stack: '', ids: [] } });
    const a = await pool.request({ vcpus: 1, ram: 1 });
    const ac = new AbortController();
    const blocked = pool.request({ vcpus: 2, ram: 1 }, ac.signal);
    const small = watch(pool.request({ vcpus: 1, ram: 1 }));
    await tick();
    expect(small.settled).toBe(false);
    ac.abort(new Error('priority 0'));
    await expect(blocked).rejects.toThrow('priority 0');
    await tick();
    // The head is gone, so the small request fits in the free vCPU at once.
    expect(small.settled).toBe(true);
    expect(pool.waiting).toBe(0);
    a.release();
    (small.value as Allocation).release();
    expect(pool.available).toEqual({ vcpus: 2, ram: GiB, gpus: 0 });
  });

  it('rejects a request whose signal is already aborted without queueing it', async () => {
    const pool = new ResourcePool({ vcpus: 1, ram: 1, gpus: { stack: '', ids: [] } });
    await expect(pool.request({ vcpus: 1, ram: 1 }, AbortSignal.abort('gone'))).rejects.toBe('gone');
    expect(pool.waiting).toBe(0);
    expect(pool.available.vcpus).toBe(1);
  });

  it('an aborted signal after allocation changes nothing', async () => {
    const pool = new ResourcePool({ vcpus: 1, ram: 1, gpus: { stack: '', ids: [] } });
    const ac = new AbortController();
    const a = await pool.request({ vcpus: 1, ram: 1 }, ac.signal);
    ac.abort();
    expect(pool.available.vcpus).toBe(0);
    a.release();
    expect(pool.available.vcpus).toBe(1);
  });
});
