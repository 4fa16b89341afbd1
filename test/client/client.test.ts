// The client against a real FakeArvados over HTTPS on 127.0.0.1.
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import createDebug from 'debug';
import { ArvadosClient, type Container } from '../../src/index.js';
import { FakeArvados, TestClock } from '../../src/testing/index.js';
import { failure } from '../helpers/failure.js';
import { onClock } from './on-clock.js';

const fast = { retryDelay: 5, maxRetryDelay: 20 };

describe('ArvadosClient', () => {
  let fake: FakeArvados;
  let client: ArvadosClient;
  const errors: unknown[] = [];
  const logLines: string[] = [];
  const savedLog = createDebug.log;
  beforeAll(async () => {
    fake = await new FakeArvados({ maxItemsPerResponse: 50 }).start();
    client = fake.client({ ...fast, retries: 3, timeout: 2000 });
    createDebug.enable('arvados-dispatch:*');
    createDebug.log = (...args: unknown[]) => void logLines.push(args.map(String).join(' '));
  });
  afterAll(async () => {
    createDebug.disable();
    createDebug.log = savedLog;
    client.close();
    await fake.stop();
  });
  afterEach(() => {
    fake.setFaults(undefined);
    fake.clearOverride();
    fake.resetCounts();
  });
  const track = async (p: Promise<unknown>) => {
    const e = await failure(p);
    errors.push(e);
    return e;
  };

  it('identifies its token with a verified TLS connection', async () => {
    const me = await client.currentAuthorization();
    expect(me.uuid).toBe(fake.rootToken.uuid);
    const req = fake.requests[0];
    expect(req.tokenUuid).toBe(fake.rootToken.uuid);
    expect(req.requestId).toMatch(/^req-[0-9a-z]{20}$/);
  });

  it('refuses an untrusted certificate at once and points at ARVADOS_API_HOST_INSECURE', async () => {
    const untrusting = new ArvadosClient({ apiHost: fake.apiHost, apiToken: fake.rootToken.token, retries: 3, ...fast });
    const e = await track(untrusting.currentAuthorization());
    expect(e.status).toBe(0);
    expect(e.code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
    expect(e.retryable).toBe(false);
    expect(e.attempts).toBe(1);
    expect(e.message).toContain('ARVADOS_API_HOST_INSECURE');
    expect(fake.count()).toBe(0);
    const insecure = new ArvadosClient({ apiHost: fake.apiHost, apiToken: fake.rootToken.token, insecure: true });
    expect((await insecure.currentAuthorization()).uuid).toBe(fake.rootToken.uuid);
    untrusting.close();
    insecure.close();
  });

  it('works from the environment variables a user sets', async () => {
    const fromEnv = ArvadosClient.fromEnv({ ...fake.env(), HOME: '/nonexistent' });
    expect(fromEnv.insecure).toBe(true);
    expect((await fromEnv.currentAuthorization()).uuid).toBe(fake.rootToken.uuid);
    fromEnv.close();
  });

  it('turns a rejected token into a 401 ArvadosApiError without retrying', async () => {
    const bad = fake.client({ token: 'wrongtoken0123456789', retries: 3, ...fast });
    const e = await track(bad.currentAuthorization());
    expect(e.status).toBe(401);
    expect(e.retryable).toBe(false);
    expect(e.errors[0]).toContain('Not logged in');
    expect(e.requestId).toMatch(/^req-/);
    expect(fake.count('current')).toBe(1);
    expect(e.message).not.toContain('wrongtoken0123456789');
    bad.close();
  });

  it('does not retry 4xx answers', async () => {
    const c = fake.addContainer({ priority: 0 });
    const e422 = await track(client.lockContainer(c.uuid));
    expect(e422.status).toBe(422);
    expect(e422.errors[0]).toContain('cannot lock when priority<=0');
    expect(fake.count('containers.lock')).toBe(1);
    const e404 = await track(client.getContainer('zzzzz-dz642-000000000000000'));
    expect(e404.status).toBe(404);
    const other = fake.addToken();
    const c2 = fake.addContainer({ state: 'Locked', locked_by_uuid: other.uuid });
    const e403 = await track(client.unlockContainer(c2.uuid));
    expect(e403.status).toBe(403);
    expect(fake.count('containers.unlock')).toBe(1);
  });

  it('retries 500s with the same request id and succeeds', async () => {
    fake.override('current', { status: 500, body: { errors: ['boom'] }, times: 2 });
    const me = await client.currentAuthorization();
    expect(me.uuid).toBe(fake.rootToken.uuid);
    expect(fake.count('current')).toBe(3);
    const ids = new Set(fake.requests.map((r) => r.requestId));
    expect(ids.size).toBe(1);
  });

  it('retries 429 and 502/503/504 but not 501', async () => {
    for (const status of [429, 502, 503, 504]) {
      fake.resetCounts();
      fake.override('current', { status, body: {}, times: 1 });
      await client.currentAuthorization();
      expect(fake.count('current')).toBe(2);
    }
    fake.resetCounts();
    fake.override('current', { status: 501, body: { errors: ['not implemented'] }, times: 1 });
    const e = await track(client.currentAuthorization());
    expect(e.status).toBe(501);
    expect(fake.count('current')).toBe(1);
  });

  it('honours Retry-After', async () => {
    fake.override('current', { status: 503, body: {}, headers: { 'Retry-After': '1' }, times: 1 });
    // The wait on a test clock: exactly the second asked for, and no wall time.
    const clock = new TestClock(0);
    await onClock(clock, fake.client({ ...fast, clock }).currentAuthorization());
    expect(clock.now()).toBe(1_000);
    expect(fake.count('current')).toBe(2);
  });

  it('gives up at once when Retry-After is beyond maxRetryAfter', async () => {
    const impatient = fake.client({ ...fast, retries: 3, maxRetryAfter: 500 });
    fake.override('current', { status: 429, body: {}, headers: { 'Retry-After': '120' }, times: 1 });
    const e = await track(impatient.currentAuthorization());
    expect(e.status).toBe(429);
    expect(e.retryable).toBe(true);
    expect(fake.count('current')).toBe(1);
    impatient.close();
  });

  it('returns the last answer when retries run out', async () => {
    fake.override('current', { status: 500, body: { errors: ['still broken'] } });
    const e = await track(client.currentAuthorization());
    expect(e.status).toBe(500);
    expect(e.attempts).toBe(4);
    expect(e.errors[0]).toContain('still broken');
    expect(e.message).toContain('after 4 attempts');
    expect(fake.count('current')).toBe(4);
  });

  it('turns garbage bodies into ArvadosApiError, never an unhandled exception', async () => {
    const once = fake.client({ retries: 0 });
    fake.override('current', { status: 502, body: '<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>', headers: { 'Content-Type': 'text/html' } });
    const html = await track(once.currentAuthorization());
    expect(html.status).toBe(502);
    expect(html.errors[0]).toContain('502 Bad Gateway');
    fake.override('current', { status: 200, body: '{"uuid": "zzzzz-gj3' });
    const truncated = await track(once.currentAuthorization());
    expect(truncated.status).toBe(200);
    expect(truncated.retryable).toBe(true);
    expect(truncated.errors[0]).toContain('not valid JSON');
    fake.override('current', { status: 200, body: '' });
    expect((await track(once.currentAuthorization())).errors[0]).toContain('empty response body');
    fake.override('current', { status: 200, body: '[1,2]' });
    await track(once.currentAuthorization());
    fake.clearOverride();
    fake.setFaults({ rate: 1, kinds: ['truncated'] });
    expect((await track(once.currentAuthorization())).status).toBe(200);
    once.close();
  });

  it('retries a garbage 200 and then succeeds', async () => {
    fake.override('current', { status: 200, body: 'garbage', times: 1 });
    expect((await client.currentAuthorization()).uuid).toBe(fake.rootToken.uuid);
    expect(fake.count('current')).toBe(2);
  });

  it('retries connection resets and timeouts', async () => {
    fake.setFaults({ rate: 1, kinds: ['reset'], seed: 1 });
    const e = await track(fake.client({ ...fast, retries: 2 }).currentAuthorization());
    expect(e.status).toBe(0);
    expect(e.retryable).toBe(true);
    expect(fake.count('current')).toBe(3);
    fake.resetCounts();
    fake.setFaults({ rate: 1, kinds: ['hang'] });
    const quick = fake.client({ ...fast, retries: 1, timeout: 150 });
    const t = await track(quick.currentAuthorization());
    expect(t.code).toBe('ETIMEDOUT');
    expect(t.message).toContain('within 150 ms');
    expect(fake.count('current')).toBe(2);
    fake.setFaults({ rate: 0.5, kinds: ['reset', 'hang', 500], seed: 7 });
    const sturdy = fake.client({ ...fast, retries: 12, timeout: 150 });
    for (let i = 0; i < 5; i++) expect((await sturdy.currentAuthorization()).uuid).toBe(fake.rootToken.uuid);
    quick.close();
    sturdy.close();
  });

  it('reports a refused connection', async () => {
    const dead = await new FakeArvados({ tls: false }).start();
    const host = dead.apiHost;
    await dead.stop();
    const c = new ArvadosClient({ apiHost: host, apiToken: 'x', retries: 1, ...fast });
    const e = await track(c.currentAuthorization());
    expect(e.code).toBe('ECONNREFUSED');
    expect(e.retryable).toBe(true);
    expect(e.attempts).toBe(2);
    c.close();
  });

  it('can be aborted, also while waiting to retry', async () => {
    fake.override('current', { status: 503, body: {}, headers: { 'Retry-After': '30' } });
    const ac = new AbortController();
    const p = client.currentAuthorization({ signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop now')), 50);
    await expect(p).rejects.toThrow('stop now');
  });

  it('JSON-encodes list parameters in the query string', async () => {
    const c = fake.addContainer({ priority: 9 });
    const page = await client.listContainers({ filters: [['uuid', '=', c.uuid], ['priority', '>', '0']], order: ['priority desc'], limit: 5, count: 'none' });
    expect(page.items.map((i) => i.uuid)).toEqual([c.uuid]);
    expect(page).not.toHaveProperty('items_available');
    const rec = fake.requests.at(-1)!;
    expect(rec.method).toBe('GET');
    expect(rec.params).toEqual({ filters: [['uuid', '=', c.uuid], ['priority', '>', '0']], order: ['priority desc'], limit: '5', count: 'none' });
  });

  it('sends long queries as POST with _method=GET', async () => {
    const cs = fake.addContainers(60);
    const uuids = cs.map((c) => c.uuid);
    const page = await client.listContainers({ filters: [['uuid', 'in', uuids]], limit: 100 });
    expect(page.items_available).toBe(60);
    expect(page.items).toHaveLength(50); // the server's cap
    const rec = fake.requests.at(-1)!;
    expect(rec.method).toBe('POST');
    expect(rec.route).toBe('containers.list');
  });

  it('walks every page with a uuid cursor, and no container is skipped when earlier ones leave the set', async () => {
    for (const c of fake.containers()) fake.deleteContainer(c.uuid);
    fake.addContainers(137, (i) => ({ priority: 1 + i }));
    fake.resetCounts();
    const seen = new Set<string>();
    let pages = 0;
    const filters: [string, string, string][] = [['state', '=', 'Queued'], ['priority', '>', '0']];
    for await (const page of client.pageContainers({ filters, limit: 100 })) {
      pages++;
      for (const c of page.items) {
        seen.add(c.uuid);
        fake.forceUpdate(c.uuid, { state: 'Locked', locked_by_uuid: fake.rootToken.uuid }); // leaves the Queued set
      }
    }
    expect(seen.size).toBe(137);
    expect(pages).toBe(3); // 50 + 50 + 37 (the server caps pages at 50), ending on the short page
    expect(fake.count('containers.list')).toBe(3);
    const params = fake.requests.map((r) => r.params);
    expect(params[0]).toMatchObject({ order: ['uuid asc'], count: 'none', limit: '100' });
    expect((params[1]!.filters as unknown[]).at(-1)).toEqual(['uuid', '>', [...seen].sort()[49]]);
  });

  it('ends on an empty page when the total is a multiple of the page size', async () => {
    for (const c of fake.containers()) fake.deleteContainer(c.uuid);
    fake.addContainers(100);
    fake.resetCounts();
    expect(await client.listAllContainers({ limit: 50 })).toHaveLength(100);
    expect(fake.count('containers.list')).toBe(3);
  });

  it('keeps priorities above 2^53 in order', async () => {
    for (const c of fake.containers()) fake.deleteContainer(c.uuid);
    const base = 2 ** 60;
    const cs = [3, 1, 2].map((k) => fake.addContainer({ priority: base + k * 2 ** 10 }));
    const page = await client.listContainers({ filters: [['priority', '>', '0']], order: ['priority desc'] });
    expect(page.items.map((i) => i.uuid)).toEqual([cs[0], cs[2], cs[1]].map((c) => c.uuid));
    expect(page.items[0].priority).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
  });

  it('gets, updates, locks, unlocks and logs', async () => {
    const c = fake.addContainer({ priority: 4 });
    expect((await client.getContainer(c.uuid)).state).toBe('Queued');
    const lock = await client.lockContainer(c.uuid);
    expect(lock).toEqual({ uuid: c.uuid, state: 'Locked', priority: 4, auth_uuid: expect.stringMatching(/-gj3su-/), locked_by_uuid: fake.rootToken.uuid });
    const running: Container = await client.updateContainer(c.uuid, { state: 'Running' });
    expect(running.state).toBe('Running');
    const cancelled = await client.updateContainer(c.uuid, { state: 'Cancelled' });
    expect(cancelled.state).toBe('Cancelled');
    const c2 = fake.addContainer();
    await client.lockContainer(c2.uuid);
    expect((await client.unlockContainer(c2.uuid)).state).toBe('Queued');
    const log = await client.createLog({ object_uuid: c.uuid, event_type: 'dispatch', properties: { text: 'hello' } });
    expect(log.uuid).toMatch(/^zzzzz-57u5n-/);
  });

  it('refuses a non-UUID before building a URL', async () => {
    await expect(client.getContainer('../../users/current')).rejects.toThrow(TypeError);
    await expect(client.lockContainer('zzzzz-dz642-aaaaaaaaaaaaaaa?x=1')).rejects.toThrow(TypeError);
    expect(fake.count()).toBe(0);
  });

  it('never shows the token: not in errors, their inspection, the client, or debug logs', () => {
    const secret = fake.rootToken.token;
    expect(errors.length).toBeGreaterThan(10);
    for (const e of errors) {
      expect(String(e)).not.toContain(secret);
      expect(inspect(e, { depth: 10, showHidden: true })).not.toContain(secret);
      expect(JSON.stringify(e)).not.toContain(secret);
    }
    expect(inspect(client, { depth: 10, showHidden: true })).not.toContain(secret);
    expect(JSON.stringify(client)).not.toContain(secret);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join('\n')).not.toContain(secret);
  });
});
