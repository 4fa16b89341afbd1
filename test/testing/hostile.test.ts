// The hostile-answer fault family: each kind is served as documented, on the
// routes it applies to, reproducibly from a seed, alongside ordinary faults.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import {
  BAD_IDENTITIES,
  FakeArvados,
  HOSTILE_FAULTS,
  HOSTILE_UUIDS,
  MALFORMED_ITEMS,
  type FaultKind,
} from '../../src/testing/index.js';
import type { Container } from '../../src/types.js';
import { raw } from '../helpers/raw.js';

const LIST = '/arvados/v1/containers?order=uuid';
const CURRENT = '/arvados/v1/api_client_authorizations/current';

describe('FakeArvados hostile faults', () => {
  let fake: FakeArvados;
  let token: string;
  beforeAll(async () => {
    fake = await new FakeArvados().start();
    token = fake.rootToken.token;
  });
  afterAll(() => fake.stop());
  afterEach(() => {
    for (const c of fake.containers()) fake.deleteContainer(c.uuid);
    fake.setFaults(undefined);
  });

  const hostile = (kind: FaultKind): void => fake.setFaults({ rate: 1, kinds: [kind], seed: 7 });
  const items = async (): Promise<unknown[]> => {
    const res = await raw(fake, { method: 'GET', path: LIST, token });
    expect(res.status).toBe(200);
    return (JSON.parse(res.text) as { items: unknown[] }).items;
  };

  it('null-item puts a null among the real list items and answers a single record with null', async () => {
    const cs = fake.addContainers(3);
    hostile('null-item');
    const got = await items();
    expect(got.filter((x) => x === null)).toHaveLength(1);
    expect(got.filter((x) => x !== null).map((x) => (x as Container).uuid)).toEqual(cs.map((c) => c.uuid).sort());
    const one = await raw(fake, { method: 'GET', path: `/arvados/v1/containers/${cs[0].uuid}`, token });
    expect([one.status, one.text]).toEqual([200, 'null']);
    expect(fake.requests.at(-1)).toMatchObject({ fault: 'null-item', faultDetail: 'null' });
  });

  it('malformed-items adds 42, "str", {}, [] and uuid-less objects to a list, and answers a single record with one of them', async () => {
    const c = fake.addContainer();
    hostile('malformed-items');
    const got = await items();
    expect(got).toHaveLength(1 + MALFORMED_ITEMS.length);
    for (const m of MALFORMED_ITEMS) expect(got).toContainEqual(m);
    expect(got).toContainEqual(expect.objectContaining({ uuid: c.uuid, state: 'Queued' }));
    const one = await raw(fake, { method: 'GET', path: `/arvados/v1/containers/${c.uuid}`, token });
    expect(MALFORMED_ITEMS).toContainEqual(JSON.parse(one.text));
  });

  it('hostile-uuid copies a real item (state and lock holder) under a hostile uuid; on lock the change still happened', async () => {
    const mine = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    hostile('hostile-uuid');
    const got = (await items()) as Container[];
    expect(got).toHaveLength(2);
    const bad = got.find((x) => x.uuid !== mine.uuid)!;
    expect(HOSTILE_UUIDS).toContain(bad.uuid);
    expect(bad).toMatchObject({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    expect(fake.requests.at(-1)?.faultDetail).toBe(JSON.stringify(bad.uuid));

    const q = fake.addContainer();
    const lock = await raw(fake, { method: 'POST', path: `/arvados/v1/containers/${q.uuid}/lock`, token });
    expect(lock.status).toBe(200);
    expect(HOSTILE_UUIDS).toContain(lock.json?.uuid);
    expect(fake.container(q.uuid)?.state).toBe('Locked');
  });

  it('echo-headers answers a 502 HTML page that echoes the Authorization header first, before processing', async () => {
    const c = fake.addContainer();
    hostile('echo-headers');
    const res = await raw(fake, { method: 'POST', path: `/arvados/v1/containers/${c.uuid}/lock`, token, headers: { 'X-Request-Id': 'req-echo' } });
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('text/html');
    // Within the first 120 characters: an excerpt cut before masking leaks it.
    expect(res.text.slice(0, 120)).toContain(`Authorization: Bearer ${token}`);
    expect(res.text).toContain('X-Request-Id: req-echo');
    expect(res.text).toContain(`POST /arvados/v1/containers/${c.uuid}/lock HTTP/1.1`);
    expect(fake.container(c.uuid)?.state).toBe('Queued');
  });

  it('errors-200 answers 200 with only {"errors": [...]} and does not make the change', async () => {
    const c = fake.addContainer({ state: 'Locked', locked_by_uuid: fake.rootToken.uuid });
    hostile('errors-200');
    const res = await raw(fake, { method: 'PUT', path: `/arvados/v1/containers/${c.uuid}`, token, body: { container: { state: 'Running' } } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.json!)).toEqual(['errors']);
    expect((res.json!.errors as string[])[0]).toMatch(/injected fault/);
    expect(fake.container(c.uuid)?.state).toBe('Locked');
  });

  it('endless streams a 200 JSON body until the client hangs up, and the fake serves on', async () => {
    fake.addContainer();
    fake.setFaults({ rate: 1, kinds: ['endless'], routes: ['containers.list'] });
    const res = await raw(fake, { method: 'GET', path: LIST, token, limit: 4 * 2 ** 20 });
    expect(res.status).toBe(200);
    expect(res.cut).toBe(true);
    expect(res.text.length).toBeGreaterThanOrEqual(4 * 2 ** 20);
    expect(res.text.startsWith('{"kind":"arvados#containerList","offset":0,"limit":1000,"items":[{"uuid":')).toBe(true);
    // Other routes are untouched, and the server still answers.
    const cur = await raw(fake, { method: 'GET', path: CURRENT, token });
    expect(cur.json?.uuid).toBe(fake.rootToken.uuid);
  });

  it('bad-identity answers current with a bad identity, and applies to no other route', async () => {
    fake.addContainer();
    fake.setFaults({ rate: 1, kinds: ['bad-identity'], seed: 3 });
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const res = await raw(fake, { method: 'GET', path: CURRENT, token });
      expect(res.status).toBe(200);
      const body: unknown = JSON.parse(res.text);
      expect(BAD_IDENTITIES).toContainEqual(body);
      seen.add(res.text);
    }
    expect(seen.size).toBeGreaterThan(3);
    expect(await items()).toHaveLength(1);
  });

  it('is reproducible from a seed, limited to its routes, and combines with other rules (first that fires wins)', async () => {
    fake.addContainers(4);
    const run = async (): Promise<string[]> => {
      fake.setFaults([
        { rate: 0.5, kinds: ['hostile-uuid', 'null-item', 'malformed-items'], routes: ['containers.list'], seed: 42 },
        { rate: 1, kinds: [503], routes: ['containers.list', 'containers.get'] },
      ]);
      fake.resetCounts();
      for (let i = 0; i < 12; i++) await raw(fake, { method: 'GET', path: LIST, token });
      return fake.requests.map((r) => `${r.fault}:${r.faultDetail ?? ''}`);
    };
    const first = await run();
    expect(await run()).toEqual(first);
    expect(first.some((f) => f.startsWith('503'))).toBe(true);
    expect(first.some((f) => !f.startsWith('503'))).toBe(true);
    // A route outside every rule is never touched.
    fake.resetCounts();
    expect((await raw(fake, { method: 'GET', path: CURRENT, token })).status).toBe(200);
    expect(fake.requests[0].fault).toBeUndefined();
  });

  it('serves hostile kinds only when named: the default kinds stay the ordinary ones', async () => {
    fake.addContainer();
    fake.setFaults({ rate: 1, seed: 1 });
    fake.resetCounts();
    // `hang` never answers: give up quickly on it.
    for (let i = 0; i < 14; i++) await raw(fake, { method: 'GET', path: LIST, token, timeout: 300 }).catch(() => undefined);
    expect(fake.requests).toHaveLength(14);
    for (const r of fake.requests) expect(HOSTILE_FAULTS).not.toContain(r.fault);
    expect(() => fake.setFaults({ rate: 1, kinds: ['no-such' as FaultKind] })).toThrow(/unknown fault kind "no-such"/);
    expect(() => fake.setFaults([{ rate: 2 }])).toThrow(RangeError);
  });
});
