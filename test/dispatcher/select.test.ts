// Select-based polling: list queries ask for the fields the dispatcher
// decides on; runners still get full records (at hand-over, and whenever a
// selected field or modified_at changed), fetched in batched `uuid in`
// requests; a failed full fetch loses nothing.
import { afterEach, describe, expect, it } from '@jest/globals';
import { ArvadosClient, Dispatcher, type CallOptions, type Container, type ContainerList, type ListParams, type RunContainer } from '../../src/index.js';
import { SUMMARY_FIELDS } from '../../src/dispatcher/poll.js';
import { FakeArvados, type RequestRecord } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';

let fake: FakeArvados;
const dispatchers: Dispatcher[] = [];
afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await fake?.stop();
});

const BIG = {
  command: ['python3', '-c', 'print(1)'],
  environment: { A: 'a'.repeat(300) },
  mounts: { '/tmp': { kind: 'tmp', capacity: 1 << 30 } },
};

/** A client whose `uuid in` list calls fail while `failing` is set (everything else goes to the fake). */
class FlakyFullFetchClient extends ArvadosClient {
  failing = false;
  failed = 0;
  override listContainers(params: ListParams = {}, opts?: CallOptions): Promise<ContainerList> {
    const byUuid = params.filters?.some((f) => f[0] === 'uuid' && f[1] === 'in');
    if (byUuid && this.failing) {
      this.failed++;
      return Promise.reject(new Error('injected: full fetch failed'));
    }
    return super.listContainers(params, opts);
  }
}

function start(run: RunContainer, client: ArvadosClient = fake.client({ retries: 0 })) {
  const updates = new Map<string, Container[]>();
  const handed: Container[] = [];
  const cycles: boolean[] = [];
  const d = new Dispatcher({
    client,
    pollInterval: 20,
    handleSignals: false,
    events: false,
    runContainer: async (disp, c, u) => {
      handed.push(c);
      updates.set(c.uuid, []);
      return run(disp, c, {
        signal: u.signal,
        get endReason() {
          return u.endReason;
        },
        async *[Symbol.asyncIterator]() {
          for await (const x of u) {
            updates.get(c.uuid)!.push(x);
            yield x;
          }
        },
      });
    },
  });
  d.on('cycle', (s) => cycles.push(s.healthy));
  dispatchers.push(d);
  void d.run();
  return { d, updates, handed, cycles };
}

const follow: RunContainer = async (_d, _c, updates) => {
  for await (const _ of updates) void _;
};
const listCalls = (): RequestRecord[] => fake.requests.filter((r) => r.route === 'containers.list');
/** The `uuid in` list of a list request, if it is one (params are recorded decoded). */
const uuidIn = (r: RequestRecord): string[] | undefined =>
  (r.params?.filters as unknown[][] | undefined)?.find((f) => f[0] === 'uuid' && f[1] === 'in')?.[2] as string[] | undefined;
const isByUuid = (r: RequestRecord): boolean => uuidIn(r) !== undefined;

describe('select-based polling', () => {
  it('asks the queue queries only for the decision fields and hands over full records', async () => {
    fake = await new FakeArvados().start();
    const c = fake.addContainer({ ...BIG, priority: 5 });
    const { handed } = start(follow);
    await waitFor(() => handed.length === 1, 'the hand-over');
    expect(handed[0]).toMatchObject({ uuid: c.uuid, state: 'Locked', command: BIG.command, mounts: BIG.mounts, environment: BIG.environment });
    expect(handed[0].auth_uuid).toMatch(/-gj3su-/);
    // (Not counting each sweep's one-item read of the newest modified_at.)
    const queries = listCalls().filter((r) => !isByUuid(r) && r.params?.limit !== '1');
    expect(queries.length).toBeGreaterThanOrEqual(2);
    // Holding nothing, a sweep lists its own containers in full: each would be adopted.
    const full = queries.filter((r) => r.params?.select === undefined);
    expect(full.every((r) => (r.params?.filters as unknown[][])[0][0] === 'locked_by_uuid')).toBe(true);
    for (const r of queries.filter((q) => !full.includes(q))) {
      const select = r.params?.select as string[];
      expect(select).toEqual(expect.arrayContaining([...SUMMARY_FIELDS]));
      expect(select).not.toContain('mounts');
    }
  });

  it('adopts a container already locked by this token with its full record', async () => {
    fake = await new FakeArvados().start();
    const c = fake.addContainer({ ...BIG, state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    const { handed } = start(follow);
    await waitFor(() => handed.length === 1, 'the adoption');
    expect(handed[0]).toMatchObject({ uuid: c.uuid, state: 'Running', mounts: BIG.mounts, command: BIG.command });
  });

  it('fetches nothing in full while tracked containers do not change', async () => {
    fake = await new FakeArvados().start();
    fake.addContainers(5, () => ({ ...BIG, state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    const { d, handed } = start(follow);
    await waitFor(() => handed.length === 5, 'five adoptions');
    const c0 = d.status.cycles;
    await waitFor(() => d.status.cycles >= c0 + 2, 'two more cycles');
    fake.resetCounts();
    const c1 = d.status.cycles;
    await waitFor(() => d.status.cycles >= c1 + 3, 'three quiet cycles');
    expect(listCalls().filter(isByUuid)).toEqual([]);
    expect(fake.count('containers.get')).toBe(0);
  });

  it.each([
    ['priority, changed without modified_at (as the API recomputes priorities)', (uuid: string) => {
      // A bare SQL update: modified_at stays, the etag (a digest of the attributes) changes.
      const row = fake.store.row(uuid)!;
      row.priority = 0;
      row.etag = 'recomputed';
    }, (c: Container) => c.priority === 0],
    ['state', (uuid: string) => void fake.startContainer(uuid), (c: Container) => c.state === 'Running'],
    ['modified_at alone', (uuid: string) => void fake.updateAs(uuid, { runtime_status: { activity: 'x' } }), (c: Container) => c.runtime_status?.activity === 'x'],
  ])('a change of %s reaches updates as a full record', async (_name, change, seen) => {
    fake = await new FakeArvados().start();
    const c = fake.addContainer({ ...BIG, state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    const { updates, handed } = start(follow);
    await waitFor(() => handed.length === 1, 'the adoption');
    await waitFor(() => updates.get(c.uuid)!.length === 0 && listCalls().length > 4, 'a few quiet cycles');
    change(c.uuid);
    const got = await waitFor(() => updates.get(c.uuid)!.find(seen), 'the update');
    expect(got).toMatchObject({ uuid: c.uuid, mounts: BIG.mounts, command: BIG.command });
  });

  it('loses nothing when the full fetch fails: the update arrives once it works again', async () => {
    fake = await new FakeArvados().start();
    const client = new FlakyFullFetchClient({ apiHost: fake.apiHost, apiToken: fake.rootToken.token, ca: fake.caCert, retries: 0 });
    const c = fake.addContainer({ ...BIG, state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    const { d, updates, handed, cycles } = start(follow, client);
    await waitFor(() => handed.length === 1, 'the adoption');
    client.failing = true;
    fake.setPriority(c.uuid, 7);
    await waitFor(() => client.failed >= 3, 'three failed full fetches');
    expect(updates.get(c.uuid)).toEqual([]);
    expect(cycles.slice(-2)).toEqual([false, false]);
    expect(d.container(c.uuid)?.priority).toBe(1);
    client.failing = false;
    const got = await waitFor(() => updates.get(c.uuid)!.find((x) => x.priority === 7), 'the update');
    expect(got.mounts).toEqual(BIG.mounts);
    expect(handed).toHaveLength(1);
  });

  it('does not lock a Queued container whose full record cannot be read, and locks it once it can', async () => {
    fake = await new FakeArvados().start();
    const client = new FlakyFullFetchClient({ apiHost: fake.apiHost, apiToken: fake.rootToken.token, ca: fake.caCert, retries: 0 });
    client.failing = true;
    const c = fake.addContainer({ ...BIG });
    const { handed } = start(follow, client);
    await waitFor(() => client.failed >= 3, 'three failed full fetches');
    expect(fake.count('containers.lock')).toBe(0);
    expect(fake.container(c.uuid)?.state).toBe('Queued');
    client.failing = false;
    await waitFor(() => handed.length === 1, 'the hand-over');
    expect(handed[0]).toMatchObject({ state: 'Locked', command: BIG.command });
    expect(fake.count('containers.lock')).toBe(1);
  });

  it('adopts at start from full records listed in pages, without a read by uuid', async () => {
    fake = await new FakeArvados().start();
    fake.addContainers(25, () => ({ ...BIG, state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    const handed: Container[] = [];
    const d = new Dispatcher({ client: fake.client({ retries: 0 }), pollInterval: 20, batchSize: 10, handleSignals: false, events: false, runContainer: (_d, c, u) => (handed.push(c), follow(_d, c, u)) });
    dispatchers.push(d);
    void d.run();
    await waitFor(() => handed.length === 25, 'all adopted');
    expect(handed.every((c) => c.mounts && c.command?.length === 3)).toBe(true);
    expect(listCalls().filter(isByUuid)).toEqual([]);
  });

  it('reads changed containers in batched uuid-in requests of at most batchSize', async () => {
    fake = await new FakeArvados().start();
    fake.addContainer({ state: 'Running', locked_by_uuid: fake.rootToken.uuid });
    const client = fake.client({ retries: 0 });
    const d = new Dispatcher({ client, pollInterval: 20, batchSize: 10, handleSignals: false, events: false, runContainer: follow });
    dispatchers.push(d);
    let adopted = 0;
    d.on('adopted', () => adopted++);
    void d.run();
    await waitFor(() => adopted === 1 && d.status.cycles >= 2, 'the first adopted');
    // Locked by this token behind its back (a restart of a twin, or lost lock answers): read in full by uuid.
    const from = fake.requests.length;
    const cs = fake.addContainers(25, () => ({ state: 'Running', locked_by_uuid: fake.rootToken.uuid }));
    await waitFor(() => adopted === 26, 'all adopted');
    const byUuid = fake.requests.slice(from).filter((r) => r.route === 'containers.list' && isByUuid(r));
    expect(byUuid.length).toBe(3);
    for (const r of byUuid) expect(uuidIn(r)!.length).toBeLessThanOrEqual(10);
    expect(new Set(byUuid.flatMap((r) => uuidIn(r)!))).toEqual(new Set(cs.map((c) => c.uuid)));
  });
});
