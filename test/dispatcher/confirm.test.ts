// No stream ends, and so no container is cancelled, on one cycle's list
// answers: a direct read of the container decides. A real Dispatcher against
// a real FakeArvados whose list answers are replaced for a few requests by
// arbitrary well-formed lists (empty, wrong states, other owners, mixes).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { Dispatcher, type Container, type RunContainer } from '../../src/index.js';
import { CONFIRM_CONCURRENCY, confirmByDirectRead } from '../../src/dispatcher/confirm.js';
import { FakeArvados } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';

const OTHER = 'zzzzz-gj3su-0therd1spatch0';
const STATES = ['Queued', 'Locked', 'Running', 'Complete', 'Cancelled'] as const;

let fake: FakeArvados;
let d: Dispatcher;
let tracked: Container[];
const ends: string[] = [];
const released: string[] = [];

/**
 * Like the local runner: Running at once; on priority 0 it stops the
 * container (crunch-run then cancels it); when the stream ends, it lets go
 * (which cancels a Running container).
 */
const runner: RunContainer = async (dispatcher, c, updates) => {
  if (c.state === 'Locked') await dispatcher.client.updateContainer(c.uuid, { state: 'Running' });
  for await (const u of updates) {
    if (u.priority === 0) {
      released.push(c.uuid);
      await dispatcher.release(c.uuid, { reason: 'priority 0', cancel: true });
      return;
    }
  }
  if (updates.endReason !== 'stopped') {
    released.push(c.uuid);
    await dispatcher.release(c.uuid, { reason: `stream ended: ${updates.endReason}` });
  }
};

beforeAll(async () => {
  fake = await new FakeArvados().start();
  tracked = fake.addContainers(3, { priority: 1 });
  d = new Dispatcher({ client: fake.client({ retryDelay: 5, maxRetryDelay: 20, timeout: 2000 }), pollInterval: 20, handleSignals: false, runContainer: runner });
  d.on('stream-ended', (uuid, reason) => void ends.push(`${uuid} ${reason}`));
  void d.run();
  for (const c of tracked) await fake.waitForState(c.uuid, 'Running');
});

afterAll(async () => {
  await d.stop();
  await fake.stop();
});

function cycles(n: number): Promise<void> {
  return new Promise((resolve) => {
    let left = n;
    const on = (): void => {
      if (--left <= 0) {
        d.off('cycle', on);
        resolve();
      }
    };
    d.on('cycle', on);
  });
}

const item = fc.record({
  which: fc.nat({ max: 3 }),
  state: fc.constantFrom(...STATES),
  owner: fc.constantFrom<'me' | 'other' | 'none'>('me', 'other', 'none'),
  priority: fc.constantFrom(0, 1, 1000),
});

describe('single-cycle list answers', () => {
  it('never end a stream or cancel a container that a direct read shows ours and Running', async () => {
    const me = d.auth!.uuid;
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 6 }), fc.integer({ min: 1, max: 6 }), async (items, times) => {
        const records = items.map((i) => {
          const base = i.which < tracked.length ? fake.container(tracked[i.which].uuid)! : { ...fake.container(tracked[0].uuid)!, uuid: 'zzzzz-dz642-n0tthere000000x' };
          // A new version, so an answer taken at its word would reach the runner.
          const modified_at = new Date(Date.now() + 1000).toISOString();
          return { ...base, etag: `e${Math.random()}`, modified_at, state: i.state, priority: i.priority, locked_by_uuid: i.owner === 'me' ? me : i.owner === 'other' ? OTHER : null };
        });
        const before = fake.count('containers.list');
        fake.override('containers.list', { status: 200, times, body: { kind: 'arvados#containerList', items: records, items_available: records.length, offset: 0, limit: 100 } });
        await waitFor(() => fake.count('containers.list') >= before + times, 'the override to be used');
        await cycles(3);
        // (A container that does not exist may be adopted from such an answer; its stream rightly ends.)
        const ours = (x: string): boolean => tracked.some((c) => x.startsWith(c.uuid));
        expect(ends.filter(ours)).toEqual([]);
        expect(released.filter(ours)).toEqual([]);
        for (const c of tracked) {
          const now = fake.container(c.uuid)!;
          expect([now.state, now.locked_by_uuid]).toEqual(['Running', me]);
        }
      }),
      { numRuns: 25 },
    );
  });

  it('a direct read that confirms the change does end the stream', async () => {
    const [c] = tracked;
    fake.cancelContainer(c.uuid);
    await waitFor(() => ends.includes(`${c.uuid} finished`), 'the stream to end');
  });
});

describe('confirmByDirectRead', () => {
  it('reads at most max, at most CONFIRM_CONCURRENCY at a time, and leaves the rest unknown', async () => {
    const client = fake.client();
    const uuids = fake.addContainers(12).map((c) => c.uuid);
    let inFlight = 0;
    let most = 0;
    const real = client.getContainer.bind(client);
    client.getContainer = async (...args) => {
      most = Math.max(most, ++inFlight);
      try {
        return await real(...args);
      } finally {
        inFlight--;
      }
    };
    fake.deleteContainer(uuids[0]);
    const out = await confirmByDirectRead(client, uuids, new AbortController().signal, () => {}, { max: 10 });
    expect(most).toBeLessThanOrEqual(CONFIRM_CONCURRENCY);
    expect(out.get(uuids[0])).toEqual({ kind: 'gone' });
    expect(out.get(uuids[5])?.kind).toBe('record');
    expect([out.get(uuids[10])?.kind, out.get(uuids[11])?.kind]).toEqual(['unknown', 'unknown']);
  });
});
