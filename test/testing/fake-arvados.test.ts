// FakeArvados' own rules beyond the vectors: paging, filters, order, select,
// MaxDispatchAttempts, lock races, request encodings, error bodies, faults.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { X509Certificate } from 'node:crypto';
import { FakeArvados } from '../../src/testing/index.js';
import type { Container } from '../../src/types.js';
import { raw } from '../helpers/raw.js';

const q = (params: Record<string, unknown>): string => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) p.set(k, typeof v === 'string' ? v : JSON.stringify(v));
  return `/arvados/v1/containers?${p}`;
};

describe('FakeArvados', () => {
  let fake: FakeArvados;
  let token: string;
  beforeAll(async () => {
    fake = await new FakeArvados({ maxDispatchAttempts: 3, maxItemsPerResponse: 50 }).start();
    token = fake.rootToken.token;
  });
  afterAll(() => fake.stop());
  afterEach(() => {
    for (const c of fake.containers()) fake.deleteContainer(c.uuid);
    fake.setFaults(undefined);
    fake.clearOverride();
  });

  const list = async (params: Record<string, unknown>) => {
    const res = await raw(fake, { method: 'GET', path: q(params), token });
    expect(res.status).toBe(200);
    return res.json as unknown as { items: Container[]; items_available?: number; limit: number; offset: number };
  };

  it('serves HTTPS with a self-signed certificate for 127.0.0.1', () => {
    const cert = new X509Certificate(fake.caCert!);
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(fake.apiHost).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(fake.env()).toEqual({ ARVADOS_API_HOST: fake.apiHost, ARVADOS_API_TOKEN: token, ARVADOS_API_HOST_INSECURE: '1' });
  });

  it('pages with count=exact then count=none, as the Go dispatcher does', async () => {
    fake.addContainers(120, (i) => ({ priority: 1 + (i % 7) }));
    const filters = [['state', '=', 'Queued'], ['priority', '>', '0']];
    const head = await list({ filters, count: 'exact', limit: 0, order: ['priority desc'] });
    expect(head.items).toEqual([]);
    expect(head.items_available).toBe(120);
    const seen: Container[] = [];
    for (let offset = 0; offset < 120; ) {
      // limit 100 is capped at the server's 50, and the envelope says so.
      const page = await list({ filters, count: 'none', limit: 100, offset, order: ['priority desc'] });
      expect(page).not.toHaveProperty('items_available');
      expect(page.limit).toBe(50);
      expect(page.offset).toBe(offset);
      seen.push(...page.items);
      offset += page.items.length;
    }
    expect(new Set(seen.map((c) => c.uuid)).size).toBe(120);
    const pri = seen.map((c) => c.priority);
    expect(pri).toEqual([...pri].sort((a, b) => b - a));
  });

  it('breaks order ties with modified_at desc, uuid desc and ignores invalid order entries', async () => {
    const a = fake.addContainer({ priority: 5 });
    const b = fake.addContainer({ priority: 5 });
    fake.setPriority(a.uuid, 5); // a is now the most recently modified
    const res = await list({ order: ['priority desc', 'no_such_column', 'bogus desc asc'] });
    expect(res.items.map((c) => c.uuid)).toEqual([a.uuid, b.uuid]);
    // An explicit uuid (asc) ends the order: modified_at no longer matters.
    const byString = await list({ order: 'priority desc,uuid' });
    expect(byString.items.map((c) => c.uuid)).toEqual([a.uuid, b.uuid].sort());
  });

  it('implements the filter operators with Rails/Postgres semantics', async () => {
    const mine = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid, priority: 3 });
    const q1 = fake.addContainer({ priority: 0 });
    const q2 = fake.addContainer({ priority: 7 });
    const done = fake.addContainer({ state: 'Complete', priority: 2, exit_code: 0 });
    const uuids = async (filters: unknown[]) => (await list({ filters, order: 'uuid' })).items.map((c) => c.uuid).sort();
    const sorted = (...cs: Container[]) => cs.map((c) => c.uuid).sort();
    expect(await uuids([['locked_by_uuid', '=', fake.rootToken.uuid]])).toEqual(sorted(mine));
    // != with a string operand matches NULL rows too
    expect(await uuids([['locked_by_uuid', '!=', 'zzzzz-gj3su-xxxxxxxxxxxxxxx']])).toEqual(sorted(mine, q1, q2, done));
    expect(await uuids([['locked_by_uuid', '=', null]])).toEqual(sorted(q1, q2, done));
    expect(await uuids([['locked_by_uuid', '!=', null]])).toEqual(sorted(mine));
    expect(await uuids([['priority', '>=', 3]])).toEqual(sorted(mine, q2));
    expect(await uuids([['priority', '<', '3']])).toEqual(sorted(q1, done));
    expect(await uuids([['priority', '<=', 2]])).toEqual(sorted(q1, done));
    expect(await uuids([['state', 'in', ['Queued', 'Complete']]])).toEqual(sorted(q1, q2, done));
    expect(await uuids([['state', 'not in', ['Queued']]])).toEqual(sorted(mine, done));
    // NOT IN matches NULL rows unless the list holds null
    expect(await uuids([['exit_code', 'not in', [1]]])).toEqual(sorted(mine, q1, q2, done));
    expect(await uuids([['exit_code', 'not in', [1, null]]])).toEqual(sorted(done));
    expect(await uuids([['uuid', 'in', [q1.uuid, q2.uuid, 'zzzzz-dz642-nosuchcontainer']]])).toEqual(sorted(q1, q2));
    expect(await uuids([['uuid', 'like', `${q2.uuid.slice(0, 20)}%`]])).toEqual(sorted(q2));
    expect(await uuids([['state', 'ilike', 'COMPL%']])).toEqual(sorted(done));
    expect(await uuids([['uuid', 'is_a', 'arvados#container']])).toHaveLength(4);
    expect(await uuids(['(priority > lock_count)'])).toEqual(sorted(mine, q2, done));
    expect(await uuids([['created_at', '>=', '2000-01-01T00:00:00Z'], ['priority', '>', '0']])).toEqual(sorted(mine, q2, done));
    expect(await uuids([[['state', 'locked_by_uuid'], '=', 'Complete']])).toEqual(sorted(done));
  });

  it('rejects bad filters, order-free selects and parameters with 422 and a Rails error body', async () => {
    for (const params of [
      { filters: [['priority', 'like', '1%']] },
      { filters: [['priority', '=', 1.5]] },
      { filters: [['priority', 'in', 3]] },
      { filters: [['priority', 'in', ['3']]] },
      { filters: [['state', '@@', 'x']] },
      { filters: [['state', '~', 'x']] },
      { filters: [['state', '<', null]] },
      { filters: [['cost', '>', 0]] },
      { filters: 'not json' },
      { select: ['uuid', 'no_such'] },
      { offset: -1 },
    ]) {
      const res = await raw(fake, { method: 'GET', path: q(params), token });
      expect(res.status).toBe(422);
      const errors = res.json?.errors as string[];
      expect(errors[0]).toMatch(/\(req-[0-9a-z]+\)$/);
      expect(res.json?.error_token).toMatch(/^\d+\+[0-9a-f]{8}$/);
    }
  });

  it('applies select to list items (plus kind) and to get', async () => {
    const c = fake.addContainer();
    const page = await list({ select: ['uuid', 'state'] });
    expect(page.items[0]).toEqual({ uuid: c.uuid, state: 'Queued', kind: 'arvados#container' });
    const got = await raw(fake, { method: 'GET', path: `/arvados/v1/containers/${c.uuid}?select=${encodeURIComponent('["priority"]')}`, token });
    expect(got.json).toEqual({ priority: 1 });
  });

  it('fills runtime_constraints defaults and never shows secret_mounts', async () => {
    const c = fake.addContainer({ runtime_constraints: { vcpus: 2, ram: 1000 } });
    expect(c.runtime_constraints).toMatchObject({ vcpus: 2, ram: 1000, keep_cache_ram: 0, API: false, gpu: { device_count: 0 } });
    expect(c.scheduling_parameters).toMatchObject({ max_run_time: 0, partitions: [], preemptible: false });
    const c2 = fake.addContainer({ secret_mounts: { '/secret': { kind: 'text', content: 'x' } } } as Partial<Container>);
    const got = await raw(fake, { method: 'GET', path: `/arvados/v1/containers/${c2.uuid}`, token });
    expect(got.json).not.toHaveProperty('secret_mounts');
    expect(got.json).not.toHaveProperty('runtime_token');
  });

  it('cancels on the unlock that reaches MaxDispatchAttempts (3 here), as container_test.rb does', async () => {
    const c = fake.addContainer();
    const lock = () => raw(fake, { method: 'POST', path: `/arvados/v1/containers/${c.uuid}/lock`, token });
    const unlock = () => raw(fake, { method: 'POST', path: `/arvados/v1/containers/${c.uuid}/unlock`, token });
    for (let i = 1; i <= 2; i++) {
      expect((await lock()).status).toBe(200);
      expect((await unlock()).json).toMatchObject({ state: 'Queued', locked_by_uuid: null, auth_uuid: null });
      expect(fake.container(c.uuid)?.lock_count).toBe(i);
    }
    expect((await lock()).json).toMatchObject({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    expect(fake.container(c.uuid)?.lock_count).toBe(3);
    const last = await unlock();
    expect(last.json).toMatchObject({ state: 'Cancelled', locked_by_uuid: null });
    const after = fake.container(c.uuid)!;
    expect(after.runtime_status?.error).toBe(
      "Failed to start container.  Cancelled after exceeding 'Containers.MaxDispatchAttempts' (lock_count=3)",
    );
    expect(after.finished_at).toBeNull(); // the API's quirk: set_timestamps ran before check_unlock
    const again = await lock();
    expect(again.status).toBe(422);
    expect(String(again.json?.errors)).toContain('cannot lock when Cancelled');
  });

  it('lets exactly one of two tokens win each lock race', async () => {
    const other = fake.addToken();
    const cs = fake.addContainers(40);
    const a = fake.client({ retries: 0 });
    const b = fake.client({ token: other.token, retries: 0 });
    const results = await Promise.all(
      cs.flatMap((c) => [a, b].map((cl) => cl.lockContainer(c.uuid).then(() => true, (e: { status: number }) => (expect(e.status).toBe(422), false)))),
    );
    for (let i = 0; i < cs.length; i++) {
      expect(Number(results[2 * i]) + Number(results[2 * i + 1])).toBe(1);
      const holder = fake.container(cs[i].uuid)!.locked_by_uuid;
      expect(holder).toBe(results[2 * i] ? fake.rootToken.uuid : other.uuid);
    }
    a.close();
    b.close();
  });

  it('gives each lock a fresh auth token and expires it when the container finishes', async () => {
    const c = fake.addContainer();
    const locked = await raw(fake, { method: 'POST', path: `/arvados/v1/containers/${c.uuid}/lock`, token });
    const authUuid = locked.json?.auth_uuid as string;
    expect(authUuid).toMatch(/^zzzzz-gj3su-/);
    fake.completeContainer(c.uuid);
    expect(fake.container(c.uuid)).toMatchObject({ state: 'Complete', auth_uuid: null, locked_by_uuid: null, exit_code: 0 });
    expect(fake.runCount(c.uuid)).toBe(1);
  });

  it('accepts updates as JSON objects, JSON strings, form fields and top-level keys', async () => {
    const c = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    const path = `/arvados/v1/containers/${c.uuid}`;
    expect((await raw(fake, { method: 'PUT', path, token, body: { container: { runtime_status: { activity: 'a' } } } })).status).toBe(200);
    expect((await raw(fake, { method: 'PATCH', path, token, body: { container: JSON.stringify({ log: 'd41d8cd98f00b204e9800998ecf8427e+0' }) } })).status).toBe(200);
    expect((await raw(fake, { method: 'PUT', path, token, body: `container=${encodeURIComponent('{"state":"Running"}')}` })).status).toBe(200);
    const top = await raw(fake, { method: 'PUT', path, token, body: { runtime_status: { activity: 'b' }, kind: 'ignored' } });
    expect(top.status).toBe(200);
    expect(fake.container(c.uuid)).toMatchObject({ state: 'Running', runtime_status: { activity: 'b' } });
    const bad = await raw(fake, { method: 'PUT', path, token, body: { container: { runtime_status: { error: 3 } } } });
    expect(bad.status).toBe(422);
    const neg = await raw(fake, { method: 'PUT', path, token, body: { container: { priority: -1 } } });
    expect(neg.status).toBe(422);
  });

  it('refuses changes by non-admin tokens with 403 and unknown tokens with 401', async () => {
    const c = fake.addContainer();
    const user = fake.addToken({ admin: false });
    const lock = await raw(fake, { method: 'POST', path: `/arvados/v1/containers/${c.uuid}/lock`, token: user.token });
    expect(lock.status).toBe(403);
    const cur = await raw(fake, { method: 'GET', path: '/arvados/v1/api_client_authorizations/current', token: 'nope' });
    expect(cur.status).toBe(401);
    expect(String(cur.json?.errors)).toContain('Not logged in');
    expect(cur.json).not.toHaveProperty('error_token');
    const v2 = await raw(fake, { method: 'GET', path: '/arvados/v1/api_client_authorizations/current', token: `v2/${user.uuid}/${user.token}` });
    expect(v2.json).toMatchObject({ uuid: user.uuid, kind: 'arvados#apiClientAuthorization' });
    fake.revokeToken(user.token);
    expect((await raw(fake, { method: 'GET', path: '/arvados/v1/api_client_authorizations/current', token: user.token })).status).toBe(401);
  });

  it('echoes X-Request-Id, counts requests per route, and records logs', async () => {
    fake.resetCounts();
    const c = fake.addContainer();
    const res = await raw(fake, { method: 'GET', path: `/arvados/v1/containers/${c.uuid}`, token, headers: { 'X-Request-Id': 'req-abc' } });
    expect(res.headers['x-request-id']).toBe('req-abc');
    await raw(fake, { method: 'POST', path: '/arvados/v1/logs', token, body: { log: { object_uuid: c.uuid, event_type: 'dispatch', properties: { text: 'hi' } } } });
    await raw(fake, { method: 'GET', path: '/arvados/v1/nothing/here', token });
    expect(fake.counts()).toEqual({ 'containers.get': 1, 'logs.create': 1, unknown: 1 });
    expect(fake.logs.at(-1)).toMatchObject({ object_uuid: c.uuid, event_type: 'dispatch', properties: { text: 'hi' } });
    expect(fake.requests.map((r) => r.status)).toEqual([200, 200, 404]);
  });

  it('serves a discovery document without a token', async () => {
    const res = await raw(fake, { method: 'GET', path: '/discovery/v1/apis/arvados/v1/rest' });
    expect(res.json).toMatchObject({ basePath: '/arvados/v1/', uuidPrefix: 'zzzzz', maxItemsPerResponse: 50 });
  });

  it('injects each fault kind', async () => {
    const c = fake.addContainer();
    const path = `/arvados/v1/containers/${c.uuid}`;
    fake.setFaults({ rate: 1, kinds: [503], retryAfter: 2 });
    const r503 = await raw(fake, { method: 'GET', path, token });
    expect(r503.status).toBe(503);
    expect(r503.headers['retry-after']).toBe('2');
    fake.setFaults({ rate: 1, kinds: ['html'] });
    const html = await raw(fake, { method: 'GET', path, token });
    expect(html.status).toBe(502);
    expect(html.json).toBeUndefined();
    fake.setFaults({ rate: 1, kinds: ['truncated'] });
    const trunc = await raw(fake, { method: 'GET', path, token });
    expect(trunc.status).toBe(200);
    expect(trunc.json).toBeUndefined();
    fake.setFaults({ rate: 1, kinds: ['reset'] });
    await expect(raw(fake, { method: 'GET', path, token })).rejects.toThrow();
    // After-processing faults really did the work: the lock happened although the answer was lost.
    await expect(raw(fake, { method: 'POST', path: `${path}/lock`, token })).rejects.toThrow();
    expect(fake.container(c.uuid)?.state).toBe('Locked');
    fake.setFaults({ rate: 1, kinds: [500], routes: ['containers.list'] });
    expect((await raw(fake, { method: 'GET', path, token })).status).toBe(200);
    expect((await raw(fake, { method: 'GET', path: q({}), token })).status).toBe(500);
  });

  it('answers overrides like the Go ServerStub, for a number of times', async () => {
    fake.override('containers.list', { status: 500, body: '', times: 2 });
    expect((await raw(fake, { method: 'GET', path: q({}), token })).status).toBe(500);
    expect((await raw(fake, { method: 'GET', path: q({}), token })).status).toBe(500);
    expect((await raw(fake, { method: 'GET', path: q({}), token })).status).toBe(200);
  });

  it('keeps modified_at strictly increasing and changes etag on every update', () => {
    const c = fake.addContainer();
    const a = fake.setPriority(c.uuid, 2);
    const b = fake.setPriority(c.uuid, 3);
    expect(b.modified_at! > a.modified_at!).toBe(true);
    expect(b.etag).not.toBe(a.etag);
  });
});

describe('FakeArvados over plain HTTP', () => {
  it('serves http:// when tls is false', async () => {
    const fake = await new FakeArvados({ tls: false }).start();
    try {
      expect(fake.apiHost).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(fake.caCert).toBeUndefined();
      const me = await fake.client().currentAuthorization();
      expect(me.uuid).toBe('zzzzz-gj3su-000000000000000');
    } finally {
      await fake.stop();
    }
  });
});

describe('selfSignedCert', () => {
  it('always produces a certificate OpenSSL accepts (minimal DER serials)', async () => {
    const { selfSignedCert } = await import('../../src/testing/index.js');
    const { createSecureContext } = await import('node:tls');
    // 1 in 256 serials had a leading zero byte before the fix; 600 tries make a regression near certain to show.
    for (let i = 0; i < 600; i++) {
      const { cert, key } = selfSignedCert();
      expect(() => createSecureContext({ cert, key })).not.toThrow();
    }
  });
});
