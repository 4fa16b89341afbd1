// Property-based: a real Dispatcher against a real FakeArvados over HTTPS,
// fed arbitrary answers (any JSON, near-valid records and lists, raw text,
// strings quoting the token, any status) on the list, get, lock and current
// paths, and the fake's hostile fault kinds at random rates. Whatever
// arrives: run() rejects only for the documented fatal case (no identity),
// nothing is left as an unhandled rejection, no runner sees an invalid uuid,
// no container is cancelled, every container completes, and no 8-character
// piece of the token's secret shows in warnings, events, debug output or
// `logs` records.
import { format } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import createDebug from 'debug';
import fc from 'fast-check';
import { Dispatcher, type Clock, type Container, type RunContainer } from '../../src/index.js';
import { FakeArvados, HOSTILE_FAULTS, type FaultOptions, type HostileFaultKind, type RouteName } from '../../src/testing/index.js';
import { fragmentsIn } from '../client/fragments.js';
import { sleep } from '../../src/util/sleep.js';
import { waitFor } from '../helpers/wait.js';

const SECRET = 'hostilesecret0123456789abcdefghijklmnopqrstuvwxyzAB';
const TOKEN_UUID = 'zzzzz-gj3su-h0st1le0000000a';
const TOKEN = `v2/${TOKEN_UUID}/${SECRET}`;
const CONTAINER_UUID = /^[0-9a-z]{5}-dz642-[0-9a-z]{15}$/;
const PER_RUN_TIMEOUT = 40_000;

let fake: FakeArvados;
const debugLines: string[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
const savedLog = createDebug.log;

beforeAll(async () => {
  fake = await new FakeArvados().start();
  fake.addToken({ uuid: TOKEN_UUID, token: SECRET });
  process.on('unhandledRejection', onUnhandled);
  createDebug.log = (...args: unknown[]) => void debugLines.push(format(...args));
  createDebug.enable('arvados-dispatch:*');
});

afterAll(async () => {
  createDebug.disable();
  createDebug.log = savedLog;
  process.off('unhandledRejection', onUnhandled);
  await fake.stop();
});

// ---- generators -------------------------------------------------------------

const tokenish = fc.constantFrom(TOKEN, SECRET, `Bearer ${TOKEN}`, `Authorization: Bearer ${TOKEN}`, `OAuth2 ${SECRET}`, `x${SECRET.slice(3, 40)}y`);
const text = fc.oneof({ weight: 3, arbitrary: fc.string({ maxLength: 30 }) }, { weight: 1, arbitrary: tokenish });
const json = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    text,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(text, tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** A plausible container record, for near-valid answers. */
const record = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  kind: 'arvados#container',
  uuid: 'zzzzz-dz642-0000000000000aa',
  state: 'Queued',
  priority: 1,
  locked_by_uuid: null,
  command: ['true'],
  mounts: {},
  runtime_constraints: { vcpus: 1, ram: 1 },
  environment: {},
  runtime_status: {},
  ...over,
});
const FIELDS = ['uuid', 'state', 'priority', 'locked_by_uuid', 'command', 'mounts', 'runtime_constraints', 'runtime_status', 'kind'];
const nearRecord = fc.tuple(fc.constantFrom(...FIELDS), json, fc.constantFrom(null, TOKEN_UUID)).map(([k, v, holder]) => record({ locked_by_uuid: holder, state: holder ? 'Locked' : 'Queued', [k]: v }));
const nearList = fc
  .array(fc.oneof(nearRecord, json, fc.constant(record())), { maxLength: 5 })
  .chain((items) => fc.record({ items: fc.constant(items), extra: fc.dictionary(fc.constantFrom('kind', 'offset', 'limit', 'items_available', 'errors'), json, { maxKeys: 2 }) }))
  .map(({ items, extra }) => ({ kind: 'arvados#containerList', offset: 0, limit: 100, items_available: items.length, items, ...extra }));
const nearIdentity = fc.oneof(
  json.map((uuid) => ({ kind: 'arvados#apiClientAuthorization', uuid })),
  fc.constant({ uuid: TOKEN_UUID, api_token: SECRET, errors: [TOKEN] }),
);

/** A body as sent: JSON text of a value, or raw text. */
const body = fc.oneof(
  { weight: 4, arbitrary: fc.oneof(json, nearRecord, nearList, nearIdentity).map((v) => JSON.stringify(v) ?? 'null') },
  { weight: 1, arbitrary: fc.oneof(text, fc.constant(`<html><pre>Authorization: Bearer ${TOKEN}</pre></html>`)) },
);
const status = fc.oneof({ weight: 5, arbitrary: fc.constant(200) }, { weight: 2, arbitrary: fc.constantFrom(201, 204, 400, 401, 403, 404, 409, 422, 500, 502, 503) });
const ROUTES: readonly RouteName[] = ['containers.list', 'containers.get', 'containers.lock', 'current'];

const arbitraryAnswers = fc.record({
  route: fc.constantFrom(...ROUTES),
  status,
  body,
  times: fc.integer({ min: 1, max: 4 }),
  leaveLocked: fc.boolean(),
});

const hostileFaults = fc.record({
  kinds: fc.subarray([...HOSTILE_FAULTS] as HostileFaultKind[], { minLength: 1 }),
  routes: fc.subarray(['containers.list', 'containers.get', 'containers.lock', 'containers.unlock', 'logs.create', 'current'] as RouteName[], { minLength: 1 }),
  rate: fc.double({ min: 0.05, max: 0.35, noNaN: true }),
  seed: fc.integer(),
  leaveLocked: fc.boolean(),
});

// ---- one dispatcher run ---------------------------------------------------------

/**
 * How much faster than real time the runs' dispatcher clock goes. An
 * overload answer (503/429) pauses locking for 1 s, 2 s, 4 s... of the
 * dispatcher's clock (ApiPressure's own back-off, not an option): four 503s
 * to lock took 12 s of a run. The dispatcher's intervals below are given in
 * its time, SPEED times what they last in real time; the client's timeouts
 * and retries are on the real clock.
 */
const SPEED = 20;

/** A clock that goes SPEED times as fast as the real one, from now on. */
function fastClock(): Clock {
  const t0 = Date.now();
  return { now: () => t0 + (Date.now() - t0) * SPEED, sleep: (ms, signal) => sleep(ms / SPEED, signal) };
}

interface Outcome {
  /** run()'s rejection, if it rejected. */
  rejected?: Error;
  /** uuids handed to the runner. */
  handed: string[];
  /** warnings and every other event's arguments, as text. */
  output: string[];
}

/**
 * Adds three containers and runs a dispatcher with the token until all three
 * are Complete (or run() settles on its own). Its runner, like crunch-run,
 * sets the container Running and Complete through the fake's side door; with
 * `leaveLocked`, the first runner of each container returns at once, leaving
 * it Locked, so that the dispatcher's release (get, logs, unlock) runs too.
 */
async function dispatchThree(leaveLocked: boolean, during: () => void): Promise<{ outcome: Outcome; cs: Container[] }> {
  // What an earlier, failed run left unfinished is finished now, so that it
  // cannot show up in this run.
  for (const c of fake.containers()) if (c.state !== 'Complete' && c.state !== 'Cancelled') fake.forceUpdate(c.uuid, { state: 'Complete', locked_by_uuid: null });
  const cs = fake.addContainers(3, (i) => ({ priority: 1 + i, runtime_constraints: { vcpus: 1, ram: 1 } }));
  const outcome: Outcome = { handed: [], output: [] };
  const starts = new Map<string, number>();
  const runContainer: RunContainer = async (_d, c, updates) => {
    outcome.handed.push(c.uuid);
    const n = (starts.get(c.uuid) ?? 0) + 1;
    starts.set(c.uuid, n);
    if (leaveLocked && n === 1) return;
    const now = fake.container(c.uuid);
    if (now && (now.state === 'Locked' || now.state === 'Running') && now.locked_by_uuid === TOKEN_UUID) fake.completeContainer(c.uuid);
    for await (const _ of updates) void _;
  };
  const d = new Dispatcher({
    client: fake.client({ token: TOKEN, retries: 3, retryDelay: 2, maxRetryDelay: 10, timeout: 1500, deadline: 5000, maxResponseBytes: 256 * 1024 }),
    runContainer,
    pollInterval: 15 * SPEED,
    minRetryPeriod: 0,
    failureBackoff: { initial: 15 * SPEED, max: 60 * SPEED },
    handleSignals: false,
    shutdownTimeout: 3000 * SPEED,
    clock: fastClock(),
  });
  for (const e of ['warning', 'settled', 'released', 'stream-ended', 'paused', 'stopping', 'identified'] as const) {
    d.on(e, (...args: unknown[]) => void outcome.output.push(`${e}: ${format(...args)}`));
  }
  during();
  const run = d.run().then(
    () => true,
    (err: unknown) => {
      outcome.rejected = err as Error;
      return true;
    },
  );
  const done = (): boolean => cs.every((c) => fake.container(c.uuid)?.state === 'Complete');
  try {
    await waitFor(async () => done() || (await Promise.race([run, Promise.resolve(false)])), 'three Complete or run() settled', PER_RUN_TIMEOUT);
  } finally {
    fake.setFaults(undefined);
    fake.clearOverride();
    await d.stop();
    await run;
  }
  return { outcome, cs };
}

/** What every run must hold, however it went. */
function checkInvariants({ outcome, cs }: { outcome: Outcome; cs: Container[] }, identityFaults: boolean): void {
  const mine = new Set(cs.map((c) => c.uuid));
  // No runner for an invalid or foreign uuid.
  for (const u of outcome.handed) {
    expect(u).toMatch(CONTAINER_UUID);
    expect(mine.has(u)).toBe(true);
  }
  // Nothing cancelled because of an answer.
  expect(fake.transitions.filter((t) => mine.has(t.uuid) && t.to === 'Cancelled')).toEqual([]);
  if (outcome.rejected) {
    // The one documented fatal case: the token cannot be identified.
    expect(identityFaults).toBe(true);
    expect(outcome.rejected.message).toMatch(/^error getting my token UUID \(/);
    expect(outcome.rejected.message).not.toContain('\n');
    expect(outcome.handed).toEqual([]);
    for (const c of cs) expect(fake.container(c.uuid)?.state).toBe('Queued');
    // Finish them for the next run's sake (another dispatcher would).
    for (const c of cs) fake.cancelContainer(c.uuid);
  } else {
    for (const c of cs) expect(fake.container(c.uuid)?.state).toBe('Complete');
  }
  // No piece of the secret anywhere we wrote.
  const everything = [...outcome.output, ...debugLines, ...fake.logs.map((l) => JSON.stringify(l)), String(outcome.rejected?.message ?? '')].join('\n');
  const leaks = fragmentsIn(everything, SECRET);
  expect(leaks.length ? everything.split('\n').filter((l) => fragmentsIn(l, SECRET).length > 0).slice(0, 3) : []).toEqual([]);
  expect(unhandled).toEqual([]);
}

describe('Dispatcher under arbitrary and hostile answers (property-based)', () => {
  it('debug output is captured by this test (so the token check below covers it)', async () => {
    debugLines.length = 0;
    const r = await dispatchThree(false, () => {});
    checkInvariants(r, false);
    expect(debugLines.some((l) => l.includes('arvados-dispatch:'))).toBe(true);
  });

  it("the token's secret in the current answer (api_token) reaches neither `auth` nor the identified event", async () => {
    const d = new Dispatcher({ client: fake.client({ token: TOKEN }), runContainer: async () => {}, pollInterval: 15, handleSignals: false });
    const seen: unknown[] = [];
    d.on('identified', (a) => void seen.push(a));
    void d.run();
    await waitFor(() => d.auth, 'identified');
    await d.stop();
    expect(d.auth?.uuid).toBe(TOKEN_UUID);
    expect(d.auth).not.toHaveProperty('api_token');
    expect(fragmentsIn(format(d.auth, seen), SECRET)).toEqual([]);
  });

  it('run() names the side at fault when the identity cannot be had: an invalid answer, an error answer, no answer', async () => {
    const attempt = async (): Promise<string> => {
      const d = new Dispatcher({ client: fake.client({ token: TOKEN, retries: 0 }), runContainer: async () => {}, handleSignals: false });
      return d.run().then(
        () => 'resolved',
        (e: Error) => e.message,
      );
    };
    fake.override('current', { status: 200, body: { uuid: null }, times: 1 });
    expect(await attempt()).toMatch(/^error getting my token UUID \(the API server sent an invalid answer\): GET api_client_authorizations\/current: /);
    fake.override('current', { status: 403, body: { errors: ['Forbidden'] }, times: 1 });
    expect(await attempt()).toMatch(/^error getting my token UUID \(the API server answered with an error\): .*HTTP 403: Forbidden/);
    fake.override('current', { status: 401, body: { errors: ['Not logged in'] }, times: 1 });
    expect(await attempt()).toMatch(/^error getting my token UUID \(the API token was rejected\)/);
  });

  it("the client's warnings about dropped list items reach the dispatcher's warning event, once per item", async () => {
    const bad = 'zzzzz-dz642-badbadbadbad000';
    // Every poll here is a sweep (each one drops items, so none is complete),
    // and every sweep starts with the one-item read of the newest modified_at:
    // this two-item answer is over that read's limit, a malformed answer the
    // client retries before the sweep goes on. Quick retries keep five
    // cycles within the wait; with the default ones (0.5 s, doubling) each
    // sweep takes about 7.5 s.
    const d = new Dispatcher({
      client: fake.client({ token: TOKEN, retries: 3, retryDelay: 2, maxRetryDelay: 10 }),
      runContainer: async () => {},
      pollInterval: 15,
      handleSignals: false,
    });
    const warnings: string[] = [];
    d.on('warning', (m) => void warnings.push(m));
    fake.override('containers.list', { status: 200, body: { kind: 'arvados#containerList', items: [null, { uuid: bad, state: 'Bogus', priority: 1 }] } });
    void d.run();
    try {
      await waitFor(() => d.status.cycles >= 5, 'five cycles');
    } finally {
      // Even when the wait fails: a dispatcher left running would compete for the later tests' containers.
      await d.stop();
      fake.clearOverride();
    }
    expect(warnings.filter((w) => w.includes(`left out container ${bad}`))).toHaveLength(1);
    expect(warnings.filter((w) => w.includes('left out an item (null)'))).toHaveLength(1);
    // The over-limit answer to the one-item read is refused whole: it drops no item, so it adds no such warning.
    expect(warnings.some((w) => w.includes('malformed answer (2 items for limit 1)'))).toBe(true);
  });

  it("a dropped item's map keys never reach a warning: no forged lines, no flood", async () => {
    const d = new Dispatcher({ client: fake.client({ token: TOKEN }), runContainer: async () => {}, pollInterval: 15, handleSignals: false });
    const warnings: string[] = [];
    d.on('warning', (m) => void warnings.push(m));
    const forged = `\n12:00:00 zzzzz-dz642-000000000000000 finished: Cancelled ${'x'.repeat(5000)}`;
    const item = { uuid: 'zzzzz-dz642-forgedkey000000', state: 'Queued', priority: 1, locked_by_uuid: null, environment: { [forged]: 5 } };
    fake.override('containers.list', { status: 200, body: { kind: 'arvados#containerList', items: [item] } });
    void d.run();
    await waitFor(() => warnings.some((w) => w.includes('zzzzz-dz642-forgedkey000000')), 'the warning');
    await d.stop();
    fake.clearOverride();
    const w = warnings.find((x) => x.includes('zzzzz-dz642-forgedkey000000'))!;
    expect(w).not.toContain('\n');
    expect(w).not.toContain('finished: Cancelled');
    expect(w.length).toBeLessThan(300);
    expect(w).toMatch(/environment\.<key>: expected string, got number/);
  });

  it('a record with an invalid uuid that holds the token is warned about with the token masked before the cut', async () => {
    // A client that lets a record through unchecked, as a caller's own client might.
    const client = fake.client({ token: TOKEN });
    const page = client.pageContainers.bind(client);
    const hostile = { uuid: `${'a'.repeat(60)}${SECRET}`, state: 'Locked', priority: 5, locked_by_uuid: TOKEN_UUID } as unknown as Container;
    client.pageContainers = async function* (...args: Parameters<typeof page>) {
      let first = true;
      for await (const p of page(...args)) {
        yield first ? { ...p, items: [hostile, ...p.items] } : p;
        first = false;
      }
      // An empty result yields no page; the record still arrives.
      if (first) yield { offset: 0, limit: 1, items: [hostile], dropped: 0 };
    } as typeof client.pageContainers;
    const handed: string[] = [];
    const d = new Dispatcher({ client, runContainer: async (_d, c) => void handed.push(c.uuid), pollInterval: 15, handleSignals: false });
    const warnings: string[] = [];
    d.on('warning', (m) => void warnings.push(m));
    void d.run();
    try {
      await waitFor(() => warnings.some((w) => w.includes('invalid uuid')), 'the warning', 4000);
    } finally {
      await d.stop();
    }
    expect(handed).toEqual([]);
    expect(fragmentsIn(warnings.join('\n'), SECRET)).toEqual([]);
  });

  it("an identity whose uuid is not a token's (e.g. a user's) is refused: nothing is locked, nothing cancelled", async () => {
    const cs = fake.addContainers(2, () => ({ priority: 1, runtime_constraints: { vcpus: 1, ram: 1 } }));
    fake.override('current', { status: 200, body: { kind: 'arvados#apiClientAuthorization', uuid: 'zzzzz-tpzed-000000000000000' } });
    const d = new Dispatcher({ client: fake.client({ token: TOKEN, retries: 1, retryDelay: 1 }), runContainer: async () => {}, pollInterval: 15, handleSignals: false });
    const message = await d.run().then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    fake.clearOverride();
    expect(message).toMatch(/^error getting my token UUID \(the API server sent an invalid answer\)/);
    for (const c of cs) expect(fake.container(c.uuid)?.state).toBe('Queued');
    for (const c of cs) fake.forceUpdate(c.uuid, { state: 'Complete' });
  });

  it('arbitrary answers on list, get, lock and current never cost a container nor leak the token', async () => {
    await fc.assert(
      fc.asyncProperty(arbitraryAnswers, async ({ route, status, body, times, leaveLocked }) => {
        debugLines.length = 0;
        const r = await dispatchThree(leaveLocked, () => fake.override(route, { status, body, times, headers: { 'Content-Type': 'application/json' } }));
        checkInvariants(r, route === 'current');
      }),
      { numRuns: 25, seed: 20261129, endOnFailure: true },
    );
    // The generated answers were served, not dodged.
    expect(fake.requests.filter((r) => r.fault === 'override').length).toBeGreaterThan(10);
  }, 120_000);

  it('hostile fault kinds at random rates never cost a container nor leak the token', async () => {
    await fc.assert(
      fc.asyncProperty(hostileFaults, async ({ kinds, routes, rate, seed, leaveLocked }) => {
        debugLines.length = 0;
        const faults: FaultOptions = { rate, kinds, routes, seed };
        const r = await dispatchThree(leaveLocked, () => fake.setFaults(faults));
        checkInvariants(r, routes.includes('current'));
      }),
      { numRuns: 20, seed: 1129, endOnFailure: true },
    );
    const served = new Set(fake.requests.map((r) => r.fault).filter((f) => typeof f === 'string' && (HOSTILE_FAULTS as readonly string[]).includes(f)));
    expect(served.size).toBeGreaterThanOrEqual(5);
  }, 120_000);
});
