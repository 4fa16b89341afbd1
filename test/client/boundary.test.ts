// The validated boundary: every API answer is checked where it enters the
// client. Against a real FakeArvados whose answers are overridden with
// hostile ones.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import type {
  ArvadosClient} from '../../src/index.js';
import {
  ArvadosProtocolError,
  type ClientWarning,
  type Container,
  type ContainerUpdate,
} from '../../src/index.js';
import { FakeArvados } from '../../src/testing/index.js';
import { failure } from '../helpers/failure.js';

const fast = { retryDelay: 1, maxRetryDelay: 5 };

describe('the client boundary', () => {
  let fake: FakeArvados;
  let client: ArvadosClient;
  const warnings: ClientWarning[] = [];
  beforeAll(async () => {
    fake = await new FakeArvados({ tls: false }).start();
    client = fake.client({ ...fast, retries: 2 });
    client.on('warning', (w) => warnings.push(w));
  });
  afterAll(async () => {
    client.close();
    await fake.stop();
  });
  afterEach(() => {
    fake.clearOverride();
    fake.resetCounts();
    warnings.length = 0;
    for (const c of fake.containers()) fake.deleteContainer(c.uuid);
  });

  const good = (): Container => fake.addContainer({ priority: 3 });
  const listAnswer = (items: unknown[]) => ({
    status: 200,
    body: { kind: 'arvados#containerList', etag: '', self_link: '', offset: 0, limit: 100, items },
  });

  it('drops each malformed list item on its own and counts it', async () => {
    const a = good();
    const b = good();
    const badUuid = { ...a, uuid: '../../etc/passwd' };
    const badState = { ...b, uuid: 'zzzzz-dz642-badstate0000000', state: 'Bogus' };
    const badPriority = { ...b, uuid: 'zzzzz-dz642-badpriority0000', priority: '5' };
    fake.override('containers.list', listAnswer([null, a, 42, 'str', {}, badUuid, badState, badPriority, b]));
    const page = await client.listContainers();
    expect(page.items.map((c) => c.uuid)).toEqual([a.uuid, b.uuid]);
    expect(page.dropped).toBe(7);
    expect(fake.count('containers.list')).toBe(1);
  });

  it('warns about a dropped item once, naming its uuid when it has a valid one', async () => {
    const fresh = fake.client({ ...fast, retries: 0 });
    fresh.on('warning', (w) => warnings.push(w));
    const bad = { ...good(), state: 'Bogus' };
    fake.override('containers.list', listAnswer([bad, null]));
    await fresh.listContainers();
    await fresh.listContainers();
    fresh.close();
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toEqual({ uuid: bad.uuid, message: expect.stringContaining(bad.uuid) });
    expect(warnings[0].message).toContain('state');
    expect(warnings[0].message).not.toContain('Bogus');
    expect(warnings[1].uuid).toBeUndefined();
    expect(warnings[1].message).toContain('without a valid container uuid');
  });

  it('pages yield their dropped count, and the walk goes on past a malformed item', async () => {
    const items = Array.from({ length: 5 }, good).sort((x, y) => (x.uuid < y.uuid ? -1 : 1));
    const pages: { uuids: string[]; dropped: number; available?: number }[] = [];
    // The first page is hostile: its last item is malformed but identifiable.
    const first = listAnswer([items[0], { ...items[1], priority: -1 }]);
    fake.override('containers.list', { ...first, body: { ...first.body, limit: 2 }, times: 1 });
    for await (const page of client.pageContainers({ limit: 2 })) {
      pages.push({ uuids: page.items.map((c) => c.uuid), dropped: page.dropped });
    }
    expect(pages[0]).toEqual({ uuids: [items[0].uuid], dropped: 1 });
    // The cursor continued after the dropped item, not before it.
    expect(pages.slice(1).flatMap((p) => p.uuids)).toEqual(items.slice(2).map((c) => c.uuid));
    expect(pages.slice(1).every((p) => p.dropped === 0)).toBe(true);
  });

  it('a list answer that is not a list envelope is a retryable protocol error', async () => {
    fake.override('containers.list', { status: 200, body: { items: 'nope' } });
    const e = await failure(client.listContainers());
    expect(e).toBeInstanceOf(ArvadosProtocolError);
    expect(e.retryable).toBe(true);
    expect(fake.count('containers.list')).toBe(3);
  });

  it('a bad identity from current is a protocol error, retried because GET is idempotent', async () => {
    for (const body of [{ uuid: null }, { uuid: 'not-a-uuid' }, {}, [], 'zzzzz-gj3su-000000000000000']) {
      fake.resetCounts();
      fake.override('current', { status: 200, body: typeof body === 'string' ? JSON.stringify(body) : body });
      const e = await failure(client.currentAuthorization());
      expect(e).toBeInstanceOf(ArvadosProtocolError);
      expect(e.retryable).toBe(true);
      expect(e.status).toBe(200);
      expect(fake.count('current')).toBe(3);
    }
    fake.override('current', { status: 200, body: { uuid: null }, times: 1 });
    expect((await client.currentAuthorization()).uuid).toBe(fake.rootToken.uuid);
  });

  it('a 200 carrying errors is not a success for updateContainer (retried) or createLog (not retried)', async () => {
    const c = good();
    const answer = { status: 200, body: { errors: ['#<ActiveRecord::RecordInvalid: nope>'] } };
    fake.override('containers.update', answer);
    const u = await failure(client.updateContainer(c.uuid, { priority: 4 }));
    expect(u).toBeInstanceOf(ArvadosProtocolError);
    expect(u.message).toContain('RecordInvalid');
    expect(u.retryable).toBe(true);
    expect(fake.count('containers.update')).toBe(3);
    fake.override('logs.create', answer);
    const l = await failure(client.createLog({ object_uuid: c.uuid, event_type: 'dispatch', properties: { text: 'x' } }));
    expect(l).toBeInstanceOf(ArvadosProtocolError);
    expect(l.retryable).toBe(false);
    expect(fake.count('logs.create')).toBe(1);
  });

  it('a lock answer that is malformed or about another container is a protocol error, not retried', async () => {
    const c = good();
    const other = good();
    fake.override('containers.lock', { status: 200, body: { uuid: other.uuid, state: 'Locked', priority: 3, auth_uuid: null, locked_by_uuid: null } });
    const e = await failure(client.lockContainer(c.uuid));
    expect(e).toBeInstanceOf(ArvadosProtocolError);
    expect(e.retryable).toBe(false);
    expect(e.message).toContain('another container');
    fake.override('containers.lock', { status: 200, body: { uuid: c.uuid, state: 'Locked' } });
    expect(await failure(client.lockContainer(c.uuid))).toBeInstanceOf(ArvadosProtocolError);
    expect(fake.count('containers.lock')).toBe(2);
  });

  it('a malformed single record is a retryable protocol error; a good one comes back whole', async () => {
    const c = good();
    fake.override('containers.get', { status: 200, body: { ...c, state: 'Bogus' }, times: 1 });
    const got = await client.getContainer(c.uuid);
    expect(got).toEqual(c);
    expect(fake.count('containers.get')).toBe(2);
    fake.override('containers.get', { status: 200, body: { ...c, locked_by_uuid: 7 } });
    const e = await failure(client.getContainer(c.uuid));
    expect(e).toBeInstanceOf(ArvadosProtocolError);
    expect(e.message).toContain('locked_by_uuid');
  });

  it.each([
    ['vcpus', 0],
    ['vcpus', -1],
    ['vcpus', 0.5],
    ['ram', -1],
    ['ram', 0.5],
    ['keep_cache_ram', -5],
  ])('a record with runtime_constraints.%s %p is a bad answer, in a list and alone (issue 18 item 4)', async (key, value) => {
    const c = good();
    const bad = { ...c, runtime_constraints: { ...c.runtime_constraints, [key]: value } };
    fake.override('containers.list', listAnswer([bad]));
    const page = await client.listContainers();
    expect([page.items.length, page.dropped]).toEqual([0, 1]);
    fake.override('containers.get', { status: 200, body: bad });
    const e = await failure(client.getContainer(c.uuid));
    expect(e).toBeInstanceOf(ArvadosProtocolError);
    expect(e.message).toContain(`runtime_constraints.${key}`);
  });

  it('select is sent as a JSON array with uuid, and items are checked for the selected fields only', async () => {
    const c = good();
    const page = await client.listContainers({ select: ['state', 'priority'] });
    expect(fake.requests.at(-1)?.params?.select).toEqual(['state', 'priority', 'uuid']);
    expect(page.items).toEqual([{ kind: 'arvados#container', uuid: c.uuid, state: 'Queued', priority: 3 }]);
    // Typed: only the selected fields (and uuid) are there.
    const first = page.items[0];
    expect(first.state).toBe('Queued');
    // @ts-expect-error mounts were not selected
    expect(first.mounts).toBeUndefined();
    fake.override('containers.list', listAnswer([{ uuid: c.uuid, state: 'Queued', priority: 'high' }, { uuid: c.uuid, state: 'Queued', priority: 1 }]));
    const checked = await client.listContainers({ select: ['state', 'priority'] });
    expect(checked.dropped).toBe(1);
    expect(checked.items).toEqual([{ uuid: c.uuid, state: 'Queued', priority: 1 }]);
  });

  it('discovery() is checked and cached; a failed fetch is not cached', async () => {
    fake.override('discovery', { status: 200, body: { basePath: '' }, times: 3 });
    const e = await failure(client.discovery());
    expect(e).toBeInstanceOf(ArvadosProtocolError);
    const doc = await client.discovery();
    expect(doc.basePath).toBe('/arvados/v1/');
    expect(await client.discovery()).toBe(doc);
    expect(fake.count('discovery')).toBe(4);
  });

  it('records are typed read-only, while update attributes are easy to build', async () => {
    const c = await client.getContainer(good().uuid);
    const attempt = (): void => {
      // @ts-expect-error records handed out are read-only
      c.priority = 5;
      // @ts-expect-error nested too
      c.command?.push('x');
    };
    expect(typeof attempt).toBe('function');
    const attrs: ContainerUpdate = {};
    attrs.priority = 7;
    const updated = await client.updateContainer(c.uuid, attrs);
    expect(updated.priority).toBe(7);
  });
});
