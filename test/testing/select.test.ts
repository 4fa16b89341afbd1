// FakeArvados honours `select` as the Rails API server does (load_param.rb,
// application_controller.rb select_for_klass): list items carry only the
// selected keys plus `kind`, get answers only the selected keys, order terms
// on unselected columns are dropped, unknown names are a 422.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { FakeArvados } from '../../src/testing/index.js';
import type { Container } from '../../src/types.js';
import { raw } from '../helpers/raw.js';

const q = (params: Record<string, unknown>): string => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) p.set(k, typeof v === 'string' ? v : JSON.stringify(v));
  return `/arvados/v1/containers?${p}`;
};

describe('FakeArvados select', () => {
  let fake: FakeArvados;
  let token: string;
  beforeAll(async () => {
    fake = await new FakeArvados().start();
    token = fake.rootToken.token;
  });
  afterAll(() => fake.stop());

  const get = async (path: string) => {
    const res = await raw(fake, { method: 'GET', path, token });
    return { status: res.status, json: res.json as Record<string, unknown> };
  };

  it('list items hold exactly the selected keys plus kind, with null for unset values', async () => {
    const c = fake.addContainer({ priority: 7 });
    const res = await get(q({ filters: [['uuid', '=', c.uuid]], select: ['uuid', 'state', 'priority', 'locked_by_uuid', 'modified_at'] }));
    expect(res.status).toBe(200);
    const items = res.json.items as Record<string, unknown>[];
    expect(items).toEqual([
      { uuid: c.uuid, state: 'Queued', priority: 7, locked_by_uuid: null, modified_at: c.modified_at, kind: 'arvados#container' },
    ]);
  });

  it('get and update answer only the selected keys, without kind', async () => {
    const c = fake.addContainer();
    const got = await get(`/arvados/v1/containers/${c.uuid}?select=${encodeURIComponent('["state","command"]')}`);
    expect(got.json).toEqual({ state: 'Queued', command: ['echo', 'hello'] });
    const put = await raw(fake, {
      method: 'PUT',
      path: `/arvados/v1/containers/${c.uuid}?select=${encodeURIComponent('["uuid"]')}`,
      token,
      body: { container: { priority: 3 } },
    });
    expect(put.json).toEqual({ uuid: c.uuid });
  });

  it('accepts table-qualified names and silently drops modified_by_client_uuid', async () => {
    const c = fake.addContainer();
    const res = await get(q({ filters: [['uuid', '=', c.uuid]], select: ['containers.uuid', 'modified_by_client_uuid'] }));
    expect(res.status).toBe(200);
    expect(res.json.items).toEqual([{ uuid: c.uuid, kind: 'arvados#container' }]);
  });

  it('rejects unknown names and non-arrays with a 422 naming the attribute', async () => {
    const bad = await get(q({ select: ['uuid', 'secret_mounts'] }));
    expect(bad.status).toBe(422);
    expect((bad.json.errors as string[])[0]).toContain("Invalid attribute 'secret_mounts' of Container in select parameter");
    const notArray = await get(q({ select: 'uuid' }));
    expect(notArray.status).toBe(422);
    expect((notArray.json.errors as string[])[0]).toContain('Could not parse "select" param as an array');
  });

  it('drops order terms on unselected columns, as Rails must to keep the SQL valid', async () => {
    const a = fake.addContainer({ priority: 1 });
    const b = fake.addContainer({ priority: 2 });
    const filters = [['uuid', 'in', [a.uuid, b.uuid]]];
    // priority is not selected, so "priority desc" is dropped and uuid order remains.
    const res = await get(q({ filters, select: ['uuid'], order: ['priority desc', 'uuid asc'] }));
    const uuids = (res.json.items as Container[]).map((c) => c.uuid);
    expect(uuids).toEqual([a.uuid, b.uuid].sort());
    const withPriority = await get(q({ filters, select: ['uuid', 'priority'], order: ['priority desc'] }));
    expect((withPriority.json.items as Container[]).map((c) => c.uuid)).toEqual([b.uuid, a.uuid]);
  });

  it('makes a selected list far smaller than full records, and a POST with _method=GET honours select too', async () => {
    const c = fake.addContainer({ environment: { A: 'x'.repeat(500) }, mounts: { '/tmp': { kind: 'tmp', capacity: 1 << 30 } } });
    const full = await raw(fake, { method: 'GET', path: q({ filters: [['uuid', '=', c.uuid]] }), token });
    const lean = await raw(fake, {
      method: 'POST',
      path: '/arvados/v1/containers',
      token,
      body: `_method=GET&filters=${encodeURIComponent(JSON.stringify([['uuid', '=', c.uuid]]))}&select=${encodeURIComponent('["uuid","state"]')}`,
    });
    expect(lean.status).toBe(200);
    expect((lean.json?.items as unknown[])[0]).toEqual({ uuid: c.uuid, state: 'Queued', kind: 'arvados#container' });
    expect(lean.text.length * 4).toBeLessThan(full.text.length);
  });
});
