// Rules that once went wrong in the Go library or in this port, each with a
// test that fails if the rule is undone: identity before tracking, the
// throttle on adoptions, bounded `uuid in` lists, one failed batch in a good
// cycle, hand-over in priority order, malformed records.
import { describe, expect, it } from '@jest/globals';
import type { ArvadosClient, CallOptions, Container, ContainerList, LockResult } from '../../src/index.js';
import type { FakeArvados } from '../../src/testing/index.js';
import { deferred, waitFor } from '../helpers/wait.js';
import { drain, harness } from './setup.js';

type PageArgs = Parameters<ArvadosClient['pageContainers']>;
const isUuidIn = (args: PageArgs): boolean => (args[0]?.filters ?? []).some((f) => f[0] === 'uuid' && f[1] === 'in');

/** A real client on the fake, with hooks a test uses to change one behaviour. */
interface TestClient extends ArvadosClient {
  /** Called before each list walk; may throw to fail it, or return extra items for its first page. */
  beforeList: (args: PageArgs) => Container[] | void;
  /** Called before each lock; may wait. */
  beforeLock: (uuid: string) => Promise<void> | void;
}

function testClient(fake: FakeArvados): TestClient {
  const client = fake.client({ retries: 0, timeout: 5000 }) as TestClient;
  client.beforeList = () => {};
  client.beforeLock = () => {};
  const page = client.pageContainers.bind(client);
  const lock = client.lockContainer.bind(client);
  client.pageContainers = async function* (...args: PageArgs) {
    const extra = client.beforeList(args) ?? [];
    let first = true;
    for await (const p of page(...args)) {
      yield first && extra.length ? { ...p, items: [...extra, ...p.items] } : p;
      first = false;
    }
    // An empty result yields no page; the extra items still arrive.
    if (first && extra.length) yield { offset: 0, limit: extra.length, items: extra, dropped: 0 } as ContainerList<Container>;
  } as ArvadosClient['pageContainers'];
  client.lockContainer = async (uuid: string, opts?: CallOptions): Promise<LockResult> => {
    await client.beforeLock(uuid);
    return lock(uuid, opts);
  };
  return client;
}

const listsWithUuidIn = (fake: FakeArvados): string[][] =>
  fake.requests
    .filter((r) => r.route === 'containers.list')
    .map((r) => (r.params?.filters as unknown[][] | undefined)?.find((f) => f[0] === 'uuid' && f[1] === 'in')?.[2] as string[] | undefined)
    .filter((x): x is string[] => Array.isArray(x));

describe('Dispatcher regressions', () => {
  it('trackContainer called before run() waits for the identity, then adopts a container locked by this token', async () => {
    const h = await harness();
    const c = h.fake.addContainer({ state: 'Locked', locked_by_uuid: h.fake.rootToken.uuid });
    // Every list fails, so only trackContainer can hand the container over.
    h.fake.override('containers.list', { status: 500, body: { errors: ['list is down'] } });
    const got = deferred<Container>();
    const { d } = h.dispatcher({
      client: h.fake.client({ retries: 0 }),
      async runContainer(_d, ct, u) {
        got.resolve(ct);
        await drain(u);
      },
    });
    const tracking = d.trackContainer(c.uuid);
    void d.run();
    await tracking;
    expect(await got.promise).toMatchObject({ uuid: c.uuid, state: 'Locked' });
    const routes = h.fake.requests.map((r) => r.route);
    expect(routes.indexOf('current')).toBeLessThan(routes.indexOf('containers.get'));
  });

  it('throttles adopting a container locked by this token that stays untracked (minRetryPeriod)', async () => {
    const h = await harness();
    const me = h.fake.rootToken.uuid;
    const c = h.fake.addContainer({ state: 'Locked', locked_by_uuid: me });
    // An unlock that answers 200 but changes nothing: the container stays
    // Locked by us after every release, and is found untracked by each poll.
    h.fake.override('containers.unlock', { status: 200, body: { uuid: c.uuid, state: 'Queued', priority: 1, locked_by_uuid: null, auth_uuid: null } });
    const adopted: string[] = [];
    const { d } = h.dispatcher({ minRetryPeriod: 60_000, runContainer: async () => {} });
    d.on('adopted', (ct) => adopted.push(ct.uuid));
    void d.run();
    await waitFor(() => h.fake.count('containers.unlock') >= 1, 'released once');
    const cycles = d.status.cycles;
    await waitFor(() => d.status.cycles >= cycles + 15, '15 more cycles');
    expect(adopted).toEqual([c.uuid]);
  });

  it('asks for missed containers in `uuid in` lists of at most 100', async () => {
    const h = await harness();
    const cs = h.fake.addContainers(230, () => ({ state: 'Running', locked_by_uuid: h.fake.rootToken.uuid }));
    const ended = new Map<string, string | undefined>();
    const release = deferred();
    const { d } = h.dispatcher({
      async runContainer(_d, ct, u) {
        await drain(u);
        ended.set(ct.uuid, u.endReason);
        await release.promise; // keeps the container tracked after its stream ended
      },
    });
    void d.run();
    await waitFor(() => d.status.runners === 230, 'all adopted', 60_000);
    for (const c of cs) h.fake.completeContainer(c.uuid);
    await waitFor(() => ended.size === 230, 'every stream ended', 60_000);
    expect([...ended.values()].every((r) => r === 'finished')).toBe(true);
    const lists = listsWithUuidIn(h.fake);
    expect(lists.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...lists.map((l) => l.length))).toBeLessThanOrEqual(100);
    expect(new Set(lists.flat())).toEqual(new Set(cs.map((c) => c.uuid)));
    release.resolve();
  });

  it('one failed `uuid in` batch in an otherwise good cycle declares nothing gone', async () => {
    const h = await harness();
    const client = testClient(h.fake);
    const cs = h.fake.addContainers(120, () => ({ state: 'Running', locked_by_uuid: h.fake.rootToken.uuid }));
    const ended = new Map<string, string | undefined>();
    // Every poll a sweep: only a sweep reads missed containers by uuid.
    const { d } = h.dispatcher({
      client,
      incremental: false,
      async runContainer(_d, ct, u) {
        await drain(u);
        ended.set(ct.uuid, u.endReason);
      },
    });
    let batches = 0;
    void d.run();
    await waitFor(() => d.status.runners === 120, 'all adopted', 60_000);
    client.beforeList = (args) => {
      if (isUuidIn(args) && ++batches === 2) throw new Error('injected: the second batch fails');
    };
    for (const c of cs) h.fake.completeContainer(c.uuid);
    await waitFor(() => ended.size === 120, 'every stream ended', 60_000);
    expect(batches).toBeGreaterThanOrEqual(3);
    expect([...ended.values()].filter((r) => r !== 'finished')).toEqual([]);
  });

  it('hands containers over in priority order although their lock answers arrive out of order', async () => {
    const h = await harness();
    const client = testClient(h.fake);
    const cs = h.fake.addContainers(6, (i) => ({ priority: 600 - i * 100 }));
    // The highest priority's lock answers last.
    client.beforeLock = (uuid) => (uuid === cs[0].uuid ? new Promise((r) => setTimeout(r, 200)) : undefined);
    const order: number[] = [];
    const { d } = h.dispatcher({ client, lockConcurrency: 8 });
    d.on('locked', (c) => order.push(c.priority));
    void d.run();
    await waitFor(() => order.length === 6, 'six handed over');
    expect(order).toEqual([600, 500, 400, 300, 200, 100]);
  });

  it('never hands a record with a malformed uuid to a runner, and warns about it once', async () => {
    const h = await harness();
    const client = testClient(h.fake);
    const hostile = { uuid: 'zzzzz-dz642-../../../etc/passwd', state: 'Locked', priority: 5, locked_by_uuid: h.fake.rootToken.uuid } as Container;
    client.beforeList = (args) => (isUuidIn(args) ? undefined : [hostile]);
    const calls: string[] = [];
    const { d, warnings } = h.dispatcher({
      client,
      async runContainer(_d, ct, u) {
        calls.push(ct.uuid);
        await drain(u);
      },
    });
    void d.run();
    await waitFor(() => d.status.cycles >= 10, 'ten cycles');
    expect(calls).toEqual([]);
    expect(warnings.filter((w) => w.includes('invalid uuid'))).toHaveLength(1);
  });

  it('malformed list items make the cycle incomplete: nothing is declared gone, nothing cancelled', async () => {
    const h = await harness();
    const c = h.fake.addContainer({ state: 'Running', locked_by_uuid: h.fake.rootToken.uuid });
    const ended: string[] = [];
    const { d } = h.dispatcher({
      async runContainer(_d, _ct, u) {
        await drain(u);
        ended.push(String(u.endReason));
      },
    });
    void d.run();
    await waitFor(() => d.status.runners === 1, 'adopted');
    // The container is gone from every answer, which instead carries junk.
    h.fake.override('containers.list', { status: 200, body: { kind: 'arvados#containerList', offset: 0, limit: 100, items: [null, 42, 'x', {}] } });
    const cycles = d.status.cycles;
    await waitFor(() => d.status.cycles >= cycles + 5, 'five cycles of junk');
    expect(ended).toEqual([]);
    expect(d.status.healthy).toBe(false);
    expect(h.fake.container(c.uuid)?.state).toBe('Running');
    h.fake.clearOverride();
    h.fake.completeContainer(c.uuid);
    await waitFor(() => ended.length === 1, 'stream ended');
    expect(ended).toEqual(['finished']);
  });
});
