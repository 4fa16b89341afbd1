// Incremental polling against FakeArvados: between sweeps a poll reads only
// what changed since the watermark; only a sweep may declare a container
// vanished; a failed incremental poll and an event stream (re)connection
// force a sweep; an event pulls only the containers it names.
import { afterEach, describe, expect, it } from '@jest/globals';
import { ArvadosClient, Dispatcher, type CallOptions, type Container, type ContainerList, type DispatcherOptions, type ListParams } from '../../src/index.js';
import type { SelectedContainer } from '../../src/types.js';
import { FakeArvados, type RequestRecord } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';

let fake: FakeArvados;
const dispatchers: Dispatcher[] = [];
afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await fake?.stop();
});

const lists = (): RequestRecord[] => fake.requests.filter((r) => r.route === 'containers.list');
const filtersOf = (r: RequestRecord): unknown[][] => (r.params?.filters as unknown[][] | undefined) ?? [];
/** The one-item read of the newest modified_at that starts every sweep. */
const isSweepStart = (r: RequestRecord): boolean => r.params?.limit === '1';
const isSince = (r: RequestRecord): boolean => filtersOf(r).some((f) => f[0] === 'modified_at' && f[1] === '>=');
const sweeps = (): number => lists().filter(isSweepStart).length;

interface Held {
  uuid: string;
  updates: Container[];
  ended?: string;
  /** Sweeps the server had seen start when the stream ended. */
  endedAtSweeps?: number;
}

function start(opts: Partial<DispatcherOptions> = {}, client: ArvadosClient = fake.client({ retries: 0 })) {
  const held = new Map<string, Held>();
  const d = new Dispatcher({
    client,
    pollInterval: 20,
    handleSignals: false,
    events: false,
    ...opts,
    runContainer: async (_d, c, u) => {
      const h: Held = { uuid: c.uuid, updates: [] };
      // The first hand-over of each container is the one followed.
      if (!held.has(c.uuid)) held.set(c.uuid, h);
      u.signal.addEventListener('abort', () => {
        h.ended = String(u.signal.reason);
        h.endedAtSweeps = sweeps();
      });
      for await (const x of u) h.updates.push(x);
    },
  });
  dispatchers.push(d);
  void d.run();
  return { d, held };
}

/** Calls `f` at the end of the next cycle that was a sweep. */
function afterNextSweep(d: Dispatcher, f: () => void): void {
  let seen = sweeps();
  const onCycle = (): void => {
    const now = sweeps();
    if (now > seen) {
      d.off('cycle', onCycle);
      f();
    }
    seen = now;
  };
  d.on('cycle', onCycle);
}

describe('incremental polling', () => {
  it('reads only what changed between sweeps, whatever is held', async () => {
    fake = await new FakeArvados().start();
    const cs = fake.addContainers(30, () => ({ state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    // No margin: containers created within it would be read again by every poll.
    const { d, held } = start({ batchSize: 10, incremental: { sweepPolls: 1000, sweepInterval: 3_600_000, margin: 0 } });
    await waitFor(() => held.size === 30 && d.status.cycles >= 3, 'all adopted');
    const before = sweeps();
    const cycles: number[] = [];
    let last = lists().length;
    d.on('cycle', () => {
      cycles.push(lists().length - last);
      last = lists().length;
    });
    await waitFor(() => cycles.length >= 4, 'four cycles');
    // The modified-since query, the held-at-priority-0 query, the Queued query: 3, not the 4 pages of a sweep.
    expect(cycles.slice(1)).toEqual(cycles.slice(1).map(() => 3));
    const from = fake.requests.length;
    fake.setPriority(cs[4].uuid, 7);
    await waitFor(() => held.get(cs[4].uuid)!.updates.some((u) => u.priority === 7), 'the change reached the runner');
    expect(sweeps()).toBe(before);
    // The since-filter is a server timestamp minus the margin, compared with >=.
    const since = fake.requests.slice(from).find(isSince)!;
    const [, op, value] = filtersOf(since).find((f) => f[0] === 'modified_at')!;
    expect(op).toBe('>=');
    expect(value).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    expect(held.get(cs[5].uuid)!.updates).toEqual([]);
  });

  it('sees requeues and owner changes made through the API at the next poll, deletions only at the next sweep', async () => {
    fake = await new FakeArvados().start();
    const other = fake.addToken();
    const cs = fake.addContainers(3, () => ({ state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    const { d, held } = start({ incremental: { sweepPolls: 6, sweepInterval: 3_600_000 } });
    await waitFor(() => held.size === 3, 'all adopted');
    let mark = 0;
    afterNextSweep(d, () => {
      mark = sweeps();
      fake.deleteContainer(cs[0].uuid);
      fake.forceUpdate(cs[1].uuid, { state: 'Queued', locked_by_uuid: null });
      fake.forceUpdate(cs[2].uuid, { locked_by_uuid: other.uuid });
    });
    await waitFor(() => [...held.values()].every((h) => h.ended), 'all streams ended');
    expect(held.get(cs[1].uuid)).toMatchObject({ ended: 'requeued', endedAtSweeps: mark });
    expect(held.get(cs[2].uuid)).toMatchObject({ ended: 'locked-by-other', endedAtSweeps: mark });
    // Not before the next sweep, and at it.
    expect(held.get(cs[0].uuid)).toMatchObject({ ended: 'vanished', endedAtSweeps: mark + 1 });
  });

  it('sees a cancel made without a new modified_at at the next poll, another priority change at the next sweep', async () => {
    fake = await new FakeArvados().start();
    // The last one created is the newest: with no margin, only it is read again by every poll.
    const [a, b] = fake.addContainers(3, () => ({ state: 'Running', locked_by_uuid: fake.rootToken.uuid, priority: 5 }));
    const { d, held } = start({ incremental: { sweepPolls: 6, sweepInterval: 3_600_000, margin: 0 } });
    await waitFor(() => held.size === 3, 'all adopted');
    let mark = 0;
    let seenAt: Record<string, number> = {};
    d.on('cycle', () => {
      for (const h of held.values()) if (seenAt[h.uuid] === undefined && h.updates.length > 0) seenAt[h.uuid] = sweeps();
    });
    afterNextSweep(d, () => {
      mark = sweeps();
      seenAt = {};
      fake.setPriority(a.uuid, 0, { touch: false });
      fake.setPriority(b.uuid, 9, { touch: false });
    });
    await waitFor(() => held.get(b.uuid)!.updates.length > 0, 'the priority change seen');
    expect(held.get(a.uuid)!.updates[0]).toMatchObject({ priority: 0 });
    expect(seenAt[a.uuid]).toBe(mark);
    expect(held.get(b.uuid)!.updates[0]).toMatchObject({ priority: 9 });
    expect(seenAt[b.uuid]).toBe(mark + 1);
  });

  it('follows a failed incremental poll with a sweep', async () => {
    fake = await new FakeArvados().start();
    const client = new FailSinceOnce({ apiHost: fake.apiHost, apiToken: fake.rootToken.token, ca: fake.caCert, retries: 0 });
    fake.addContainers(2, () => ({ state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    const { d, held } = start({ incremental: { sweepPolls: 1000, sweepInterval: 3_600_000 } }, client);
    await waitFor(() => held.size === 2 && d.status.cycles >= 3, 'both adopted');
    const before = sweeps();
    const healthy: boolean[] = [];
    d.on('cycle', (s) => healthy.push(s.healthy));
    client.fail = true;
    await waitFor(() => client.failed === 1 && healthy.length >= 3, 'a failed incremental poll and two more');
    expect(healthy).toContain(false);
    expect(sweeps()).toBe(before + 1);
    // Nothing was declared vanished for what the failed poll did not see.
    expect([...held.values()].every((h) => h.ended === undefined)).toBe(true);
  });

  it('pulls only the containers an event names, and sweeps after the stream connects', async () => {
    fake = await new FakeArvados().start();
    const cs = fake.addContainers(5, () => ({ state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    const { d, held } = start({ pollInterval: 3_600_000, events: { ca: fake.caCert } });
    await waitFor(() => held.size === 5 && fake.websocketConnections === 1, 'adopted and subscribed');
    // The subscription's wake-up (events may have been missed) is a sweep.
    await waitFor(() => sweeps() >= 2, 'a sweep after the subscription');
    const cycles = d.status.cycles;
    await waitFor(() => d.status.cycles > cycles || fake.requests.length > 0, 'settled');
    const from = fake.requests.length;
    fake.setPriority(cs[3].uuid, 11);
    await waitFor(() => held.get(cs[3].uuid)!.updates.some((u) => u.priority === 11), 'the change reached the runner');
    const reads = fake.requests.slice(from).filter((r) => r.route === 'containers.list');
    const byUuid = reads.filter((r) => filtersOf(r).some((f) => f[0] === 'uuid' && f[1] === 'in'));
    expect(byUuid.length).toBeGreaterThanOrEqual(1);
    expect(filtersOf(byUuid[0]).find((f) => f[0] === 'uuid')![2]).toEqual([cs[3].uuid]);
    expect(reads.filter((r) => isSince(r) || isSweepStart(r))).toEqual([]);
  });

  it('with incremental: false, every poll is a sweep without the watermark read', async () => {
    fake = await new FakeArvados().start();
    fake.addContainers(2, () => ({ state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    const { d, held } = start({ incremental: false });
    await waitFor(() => held.size === 2, 'both adopted');
    await waitFor(() => d.status.cycles >= 4, 'four cycles');
    expect(lists().filter((r) => isSince(r) || isSweepStart(r))).toEqual([]);
  });
});

/** Fails the first modified-since list once `fail` is set. */
class FailSinceOnce extends ArvadosClient {
  fail = false;
  failed = 0;
  override async *pageContainers<K extends keyof Container = keyof Container>(
    params: Omit<ListParams<K>, 'order' | 'offset' | 'count'> = {},
    opts?: CallOptions,
  ): AsyncGenerator<ContainerList<SelectedContainer<K>>, void, undefined> {
    if (this.fail && this.failed === 0 && params.filters?.some((f) => f[0] === 'modified_at')) {
      this.failed++;
      throw new Error('injected: the modified-since list failed');
    }
    yield* super.pageContainers<K>(params, opts);
  }
}
