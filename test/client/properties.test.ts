// Property-based: arbitrary answers (JSON or not, near-valid records, proxy
// pages quoting the token, any status) from a real local HTTP server, on the
// list, get, lock and current paths. Whatever arrives, the client only ever
// throws ArvadosApiError (or the caller's abort), only ever returns valid
// records, and no error text holds an 8-character piece of the token.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { ArvadosApiError, ArvadosClient, type Container } from '../../src/index.js';
import { fragmentsIn } from './fragments.js';

const SECRET = 'propsecret0123456789abcdefghijklmnopqrstuvwxyzABCD';
const TOKEN = `v2/zzzzz-gj3su-0123456789abcde/${SECRET}`;
const UUID = 'zzzzz-dz642-0123456789abcde';
const RUNS = 150;

const CONTAINER_UUID = /^[0-9a-z]{5}-dz642-[0-9a-z]{15}$/;
const ANY_UUID = /^[0-9a-z]{5}-[0-9a-z]{5}-[0-9a-z]{15}$/;
const STATES = ['Queued', 'Locked', 'Running', 'Complete', 'Cancelled'];

/** The essentials of a valid container, checked independently of the client's schemas. */
function assertValidContainer(c: Partial<Container> | null | undefined): void {
  expect(c).toEqual(expect.any(Object));
  expect(c!.uuid).toMatch(CONTAINER_UUID);
  expect(STATES).toContain(c!.state);
  expect(Number.isInteger(c!.priority) && c!.priority! >= 0).toBe(true);
  expect(c!.locked_by_uuid === null || ANY_UUID.test(c!.locked_by_uuid!)).toBe(true);
  for (const k of ['command', 'output_storage_classes', 'runtime_auth_scopes'] as const) {
    const v = c![k];
    if (v !== undefined) expect(Array.isArray(v) && v.every((s) => typeof s === 'string')).toBe(true);
  }
  for (const k of ['mounts', 'runtime_constraints', 'environment', 'runtime_status'] as const) {
    const v = c![k];
    if (v !== undefined) expect(typeof v === 'object' && v !== null && !Array.isArray(v)).toBe(true);
  }
}

const validRecord = {
  kind: 'arvados#container',
  uuid: UUID,
  state: 'Locked',
  priority: 5,
  locked_by_uuid: 'zzzzz-gj3su-0123456789abcde',
  auth_uuid: null,
  lock_count: 1,
  command: ['echo', 'hi'],
  mounts: { '/tmp': { kind: 'tmp', capacity: 1 } },
  runtime_constraints: { ram: 1, vcpus: 1 },
  environment: {},
  runtime_status: {},
  exit_code: null,
};

// Strings that carry the token the way echoes and proxies do.
const tokenish = fc.oneof(
  fc.constantFrom(TOKEN, SECRET, `Bearer ${TOKEN}`, `Authorization: Bearer ${TOKEN}`, `OAuth2 ${SECRET}`),
  fc.tuple(fc.string({ maxLength: 40 }), fc.integer({ min: 0, max: SECRET.length }), fc.string({ maxLength: 40 })).map(
    ([a, cut, b]) => `${a}${SECRET.slice(0, cut)}<i>${SECRET.slice(cut)}${b}`,
  ),
  fc.tuple(fc.string({ maxLength: 200 }), fc.string({ maxLength: 200 })).map(([a, b]) => `${a}${TOKEN}${b}`),
);
const text = fc.oneof(fc.string({ maxLength: 30 }), tokenish, fc.constantFrom(UUID, 'Queued', 'Locked', ''));
const json: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    text,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom(...Object.keys(validRecord), 'errors', 'items', 'uuid')), tie('value'), { maxKeys: 5 }),
  ),
})).value;
// A valid record with one field replaced or removed: the near misses.
const nearRecord = fc
  .tuple(fc.constantFrom(...Object.keys(validRecord)), fc.option(json, { nil: undefined }))
  .map(([k, v]) => {
    const r: Record<string, unknown> = { ...validRecord };
    if (v === undefined) delete r[k];
    else r[k] = v;
    return r;
  });
const recordish = fc.oneof(fc.constant(validRecord), nearRecord, json);
// A list item that is valid, or a near miss with a uuid of its own.
const listItem = fc.oneof(recordish, fc.tuple(fc.constant(validRecord), fc.integer({ min: 0, max: 1e9 })).map(([r, i]) => ({ ...r, uuid: `zzzzz-dz642-${i.toString(36).padStart(15, '0')}` })));
const bodyValue = fc.oneof(
  recordish,
  {
    weight: 2,
    arbitrary: fc.record(
      { items: fc.oneof({ weight: 3, arbitrary: fc.array(listItem, { maxLength: 6 }) }, json), limit: fc.oneof(fc.constant(100), json), offset: fc.constant(0) },
      { requiredKeys: ['items'] },
    ),
  },
  fc.record({ errors: fc.oneof(fc.array(text, { maxLength: 3 }), json) }),
  fc.record({ uuid: fc.oneof(fc.constant('zzzzz-gj3su-0123456789abcde'), json), api_token: text }, { requiredKeys: [] }),
);
const answer = fc.record({
  status: fc.oneof({ weight: 3, arbitrary: fc.constant(200) }, fc.constantFrom(201, 302, 400, 401, 403, 404, 422, 429, 500, 502, 503)),
  body: fc.oneof({ weight: 4, arbitrary: bodyValue.map((v) => JSON.stringify(v) ?? '') }, text, fc.constant('')),
  retryAfter: fc.option(fc.oneof(fc.constantFrom('0', '1'), text), { nil: undefined }),
});

describe('the client under arbitrary answers', () => {
  let server: http.Server;
  let client: ArvadosClient;
  let current: { status: number; body: string; retryAfter?: string } = { status: 200, body: '{}' };
  // Successes per path: a generator that never produced a valid answer would make the properties vacuous.
  const returned = { list: 0, dropped: 0, get: 0, lock: 0, current: 0 };
  beforeAll(async () => {
    server = http.createServer((_req, res) => {
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      // Header values must be latin-1 without control characters to be sent at all.
      if (current.retryAfter !== undefined && /^[\x20-\x7e]*$/.test(current.retryAfter)) headers['Retry-After'] = current.retryAfter;
      res.writeHead(current.status, headers).end(current.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const apiHost = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = new ArvadosClient({ apiHost, apiToken: TOKEN, retries: 1, retryDelay: 0, maxRetryDelay: 0, maxRetryAfter: 0, timeout: 5000 });
  });
  afterAll(async () => {
    client.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  /** Runs `call`; a failure must be a token-free ArvadosApiError. */
  async function outcome<T>(call: () => Promise<T>): Promise<T | undefined> {
    try {
      return await call();
    } catch (err) {
      expect(err).toBeInstanceOf(ArvadosApiError);
      const e = err as ArvadosApiError;
      const all = [String(e), e.message, JSON.stringify(e), ...e.errors].join('\n');
      expect(fragmentsIn(all, SECRET)).toEqual([]);
      return undefined;
    }
  }

  it('list: every returned item is valid, and items + dropped = the items sent', async () => {
    await fc.assert(
      fc.asyncProperty(answer, async (a) => {
        current = a;
        const page = await outcome(() => client.listContainers({ limit: 100 }));
        if (!page) return;
        returned.list += page.items.length;
        returned.dropped += page.dropped;
        for (const c of page.items) assertValidContainer(c);
        const sent = (JSON.parse(a.body) as { items: unknown[] }).items;
        expect(page.items.length + page.dropped).toBe(sent.length);
      }),
      { numRuns: RUNS },
    );
  });

  it('get and lock: a returned record is valid and is the one asked for', async () => {
    await fc.assert(
      fc.asyncProperty(answer, async (a) => {
        current = a;
        const got = await outcome(() => client.getContainer(UUID));
        if (got) {
          returned.get++;
          assertValidContainer(got);
          expect(got.uuid).toBe(UUID);
        }
        const lock = await outcome(() => client.lockContainer(UUID));
        if (lock) {
          returned.lock++;
          assertValidContainer(lock);
          expect(lock.uuid).toBe(UUID);
          expect(lock.auth_uuid === null || ANY_UUID.test(lock.auth_uuid)).toBe(true);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('current: a returned identity has a valid uuid', async () => {
    await fc.assert(
      fc.asyncProperty(answer, async (a) => {
        current = a;
        const me = await outcome(() => client.currentAuthorization());
        if (me) {
          returned.current++;
          expect(me.uuid).toMatch(ANY_UUID);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('the generators reached both sides of every path', () => {
    for (const [path, n] of Object.entries(returned)) expect([path, n > 0]).toEqual([path, true]);
  });

  it('an abort is passed through as the caller’s reason', async () => {
    current = { status: 200, body: JSON.stringify({ items: [validRecord] }) };
    const ac = new AbortController();
    const reason = new Error('caller stopped');
    ac.abort(reason);
    await expect(client.listContainers({}, { signal: ac.signal })).rejects.toBe(reason);
  });
});
