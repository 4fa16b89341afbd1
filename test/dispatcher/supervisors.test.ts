// The supervisor cap (supervisorFraction of maxJobs) and hold()/resume(),
// on a real Dispatcher against FakeArvados.
import { describe, expect, it } from '@jest/globals';
import { supervisorCap } from '../../src/dispatcher/supervisors.js';
import { waitFor } from '../helpers/wait.js';
import type { Dispatcher } from '../../src/index.js';
import { harness } from './setup.js';

/** Waits until two more poll cycles have completed. */
async function cycles(d: Dispatcher): Promise<void> {
  const n = d.status.cycles;
  await waitFor(() => d.status.cycles >= n + 2, 'two poll cycles');
}

describe('supervisorCap', () => {
  it.each([
    [undefined, 10, Infinity],
    [0, 10, Infinity],
    [0.5, 10, 5],
    [0.3, 10, 3],
    [0.25, 10, 2],
    [0.01, 10, 1],
    [1, 10, 10],
    [0.5, Infinity, Infinity],
  ])('fraction %p of max-jobs %p -> %p', (fraction, maxJobs, want) => {
    expect(supervisorCap(fraction, maxJobs)).toBe(want);
  });

  it.each([-0.1, 1.5, Number.NaN])('refuses %p', (f) => {
    expect(() => supervisorCap(f, 10)).toThrow(RangeError);
  });
});

describe('Dispatcher supervisor cap', () => {
  it('holds at most floor(fraction x maxJobs) supervisors, and still locks the containers behind them', async () => {
    const h = await harness();
    const sup = h.fake.addContainers(4, (i) => ({ priority: 1000 - i, scheduling_parameters: { supervisor: true, partitions: [], preemptible: false, max_run_time: 0 } }));
    const plain = h.fake.addContainers(2, { priority: 10 });
    const { d } = h.dispatcher({ maxJobs: 4, supervisorFraction: 0.5 });
    void d.run();
    await waitFor(() => plain.every((c) => h.fake.container(c.uuid)?.state === 'Locked'), 'plain containers locked');
    await cycles(d);
    const locked = sup.filter((c) => h.fake.container(c.uuid)?.state === 'Locked');
    expect(locked).toHaveLength(2);
    const waiting = d.entries().filter((e) => /supervisor cap/.test(e.scheduling_status));
    expect(waiting.map((e) => e.container.uuid).sort()).toEqual(sup.filter((c) => !locked.includes(c)).map((c) => c.uuid).sort());
  });
});

describe('Dispatcher hold', () => {
  it('locks nothing while held, says why, and locks at once on resume', async () => {
    const h = await harness();
    const { d } = h.dispatcher();
    d.hold('waiting for the cluster lock');
    const c = h.fake.addContainer({ priority: 5 });
    void d.run();
    await cycles(d);
    expect(h.fake.container(c.uuid)?.state).toBe('Queued');
    expect(d.status.held).toBe('waiting for the cluster lock');
    expect(d.entries().map((e) => e.scheduling_status)).toEqual(['waiting: waiting for the cluster lock']);
    d.resume();
    await waitFor(() => h.fake.container(c.uuid)?.state === 'Locked', 'locked after resume');
  });

  it('adopts no container locked by its token while held', async () => {
    const h = await harness();
    const c = h.fake.addContainer({ priority: 5, state: 'Locked', locked_by_uuid: h.fake.rootToken.uuid });
    const seen: string[] = [];
    const { d } = h.dispatcher({
      runContainer: async (_d, x, updates) => {
        seen.push(x.uuid);
        for await (const _ of updates) void _;
      },
    });
    d.hold('the cluster lock was lost');
    void d.run();
    await cycles(d);
    expect(seen).toEqual([]);
    d.resume();
    await waitFor(() => seen.includes(c.uuid), 'adopted after resume');
  });
});
