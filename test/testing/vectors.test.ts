// Every behaviour vector taken from the API server's own tests
// (test/fixtures/containers-api.json) must hold for FakeArvados.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { FakeArvados, type FakeToken } from '../../src/testing/index.js';
import type { Container } from '../../src/types.js';
import { raw } from '../helpers/raw.js';

interface Case {
  name: string;
  setup: (Partial<Container> & { locked_by?: 'locker' | 'other' | null }) | null;
  token: 'locker' | 'other' | null;
  request: { method: string; path: string; body?: object };
  expect: {
    status: number;
    state?: string;
    locked_by?: 'locker' | 'other' | null;
    lock_count?: number;
    response_keys?: string[];
    error_match?: string;
    started_at_set?: boolean;
    finished_at_set?: boolean;
    runtime_status_error_match?: string;
  };
}
interface ListCase {
  name: string;
  containers?: Partial<Container>[];
  containers_n?: number;
  post_method_get?: boolean;
  query: Record<string, unknown>;
  expect: { status: number; items?: number; items_available?: number | 'absent'; priorities?: number[] };
}
const vectors = JSON.parse(readFileSync(new URL('../fixtures/containers-api.json', import.meta.url), 'utf8')) as {
  cases: Case[];
  list_cases: ListCase[];
};

describe('FakeArvados passes the API behaviour vectors', () => {
  let fake: FakeArvados;
  let tokens: Record<'locker' | 'other', FakeToken>;
  beforeAll(async () => {
    fake = await new FakeArvados().start();
    tokens = { locker: fake.rootToken, other: fake.addToken() };
  });
  afterAll(() => fake.stop());

  it('has every case of the fixture file', () => {
    expect(vectors.cases.length).toBeGreaterThanOrEqual(28);
    expect(vectors.list_cases.length).toBeGreaterThanOrEqual(10);
  });

  it.each(vectors.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    let uuid = 'zzzzz-dz642-000000000000000';
    if (c.setup) {
      const { locked_by, ...attrs } = c.setup;
      uuid = fake.addContainer({ ...attrs, locked_by_uuid: locked_by ? tokens[locked_by].uuid : null }).uuid;
    }
    const res = await raw(fake, {
      method: c.request.method,
      path: c.request.path.replace('{uuid}', uuid),
      token: c.token && tokens[c.token].token,
      body: c.request.body,
    });
    expect(res.status).toBe(c.expect.status);
    const after = fake.container(uuid);
    if (c.expect.status !== 200) {
      const errors = res.json?.errors as string[];
      expect(Array.isArray(errors)).toBe(true);
      if (c.expect.error_match) expect(errors.join('\n')).toContain(c.expect.error_match);
      return;
    }
    if (c.expect.state) expect(after?.state).toBe(c.expect.state);
    if (c.expect.locked_by !== undefined) {
      expect(after?.locked_by_uuid).toBe(c.expect.locked_by ? tokens[c.expect.locked_by].uuid : null);
    }
    if (c.expect.lock_count !== undefined) expect(after?.lock_count).toBe(c.expect.lock_count);
    if (c.expect.response_keys) expect(Object.keys(res.json ?? {}).sort()).toEqual(c.expect.response_keys);
    if (c.expect.started_at_set) expect(after?.started_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    if (c.expect.finished_at_set) expect(after?.finished_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    if (c.expect.runtime_status_error_match) {
      expect(String(after?.runtime_status?.error)).toContain(c.expect.runtime_status_error_match);
    }
  });

  it.each(vectors.list_cases.map((c) => [c.name, c] as const))('list: %s', async (_name, c) => {
    // Each list case gets its own server so that containers of other cases do not count.
    const own = await new FakeArvados({ tls: false }).start();
    try {
      if (c.containers) for (const ct of c.containers) own.addContainer(ct);
      if (c.containers_n) own.addContainers(c.containers_n);
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(c.query)) params.set(k, typeof v === 'string' ? v : JSON.stringify(v));
      const res = c.post_method_get
        ? await raw(own, { method: 'POST', path: '/arvados/v1/containers', token: own.rootToken.token, body: `_method=GET&${params}` })
        : await raw(own, { method: 'GET', path: `/arvados/v1/containers?${params}`, token: own.rootToken.token });
      expect(res.status).toBe(c.expect.status);
      if (c.expect.status !== 200) {
        expect(Array.isArray(res.json?.errors)).toBe(true);
        return;
      }
      const items = res.json?.items as Container[];
      expect(res.json?.kind).toBe('arvados#containerList');
      if (c.expect.items !== undefined) expect(items).toHaveLength(c.expect.items);
      if (c.expect.items_available === 'absent') expect(res.json).not.toHaveProperty('items_available');
      else if (c.expect.items_available !== undefined) expect(res.json?.items_available).toBe(c.expect.items_available);
      if (c.expect.priorities) expect(items.map((i) => i.priority)).toEqual(c.expect.priorities);
    } finally {
      await own.stop();
    }
  });
});
