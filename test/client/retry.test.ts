// The one retry loop, driven by a fake clock (nothing here waits for real),
// and what the client tells its callers about each attempt.
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { ArvadosApiError, type RequestEvent } from '../../src/index.js';
import { withRetries, type RetryPolicy } from '../../src/client/retry.js';
import type { Clock } from '../../src/util/sleep.js';
import { FakeArvados } from '../../src/testing/index.js';

/** A clock whose sleeps return at once, recording how long they were. */
function fakeClock(): Clock & { slept: number[] } {
  let t = 1_000_000;
  const slept: number[] = [];
  return {
    slept,
    now: () => t,
    sleep: async (ms: number, signal?: AbortSignal) => {
      if (signal?.aborted) throw signal.reason;
      slept.push(ms);
      t += ms;
    },
  };
}

const policy: RetryPolicy = { retries: 4, baseDelay: 100, maxDelay: 1000, maxRetryAfter: 5000 };
const failing = (n: number, value = 'ok') => {
  let calls = 0;
  return async (): Promise<string> => {
    if (calls++ < n) throw new Error(`fail ${calls}`);
    return value;
  };
};

describe('withRetries', () => {
  it('backs off exponentially with jitter from the injected randomness, capped', async () => {
    const clock = fakeClock();
    const v = await withRetries(failing(4), { policy, clock, random: () => 0.5, decide: () => ({ retry: true }) });
    expect(v).toBe('ok');
    // base + (2^n·base − base)·0.5: 100, 150, 250, 450
    expect(clock.slept).toEqual([100, 150, 250, 450]);
  });

  it('gives up after the policy retries with the last error', async () => {
    const clock = fakeClock();
    await expect(withRetries(failing(10), { policy, clock, random: () => 0, decide: () => ({ retry: true }) })).rejects.toThrow('fail 5');
    expect(clock.slept).toHaveLength(4);
  });

  it('does not retry what is not retryable, and honours a per-failure cap', async () => {
    const clock = fakeClock();
    await expect(withRetries(failing(10), { policy, clock, decide: () => ({ retry: false }) })).rejects.toThrow('fail 1');
    await expect(withRetries(failing(10), { policy, clock, decide: () => ({ retry: true, maxRetries: 1 }) })).rejects.toThrow('fail 2');
    expect(clock.slept).toHaveLength(1);
  });

  it('waits exactly a Retry-After, and gives up at once when it is beyond maxRetryAfter', async () => {
    const clock = fakeClock();
    await withRetries(failing(1), { policy, clock, decide: () => ({ retry: true, after: 3000 }) });
    expect(clock.slept).toEqual([3000]);
    await expect(withRetries(failing(1), { policy, clock, decide: () => ({ retry: true, after: 6000 }) })).rejects.toThrow('fail 1');
    expect(clock.slept).toEqual([3000]);
  });

  it('does not start a wait that would end past the deadline', async () => {
    const clock = fakeClock();
    const deadline = clock.now() + 300;
    await expect(
      withRetries(failing(10), { policy, clock, random: () => 0, deadline, decide: () => ({ retry: true }) }),
    ).rejects.toThrow('fail 3');
    expect(clock.slept).toEqual([100, 100]);
  });

  it('stops at once on abort, with the signal reason', async () => {
    const clock = fakeClock();
    const ac = new AbortController();
    const reason = new Error('stop');
    let n = 0;
    const p = withRetries(
      async () => {
        if (++n === 2) ac.abort(reason);
        throw new Error('fail');
      },
      { policy, clock, signal: ac.signal, decide: () => ({ retry: true }) },
    );
    await expect(p).rejects.toBe(reason);
    expect(n).toBe(2);
  });

  it('tells onRetry about each wait', async () => {
    const seen: [string, number, number][] = [];
    await withRetries(failing(2), {
      policy,
      clock: fakeClock(),
      random: () => 0,
      decide: () => ({ retry: true }),
      onRetry: (err, attempts, delay) => seen.push([(err as Error).message, attempts, delay]),
    });
    expect(seen).toEqual([['fail 1', 1, 100], ['fail 2', 2, 100]]);
  });
});

describe('the client on retries', () => {
  let fake: FakeArvados;
  beforeAll(async () => {
    fake = await new FakeArvados({ tls: false }).start();
  });
  afterAll(async () => {
    await fake.stop();
  });
  afterEach(() => {
    fake.clearOverride();
    fake.resetCounts();
  });

  it('waits a 503 Retry-After on its injected clock', async () => {
    const clock = fakeClock();
    const client = fake.client({ clock, retries: 3, maxRetryAfter: 200_000 });
    fake.override('current', { status: 503, body: {}, headers: { 'Retry-After': '90' }, times: 1 });
    expect((await client.currentAuthorization()).uuid).toBe(fake.rootToken.uuid);
    expect(clock.slept).toEqual([90_000]);
    // A wait that would end past the call's deadline (120 s by default) is not started.
    fake.override('current', { status: 503, body: {}, headers: { 'Retry-After': '150' }, times: 1 });
    await expect(client.currentAuthorization()).rejects.toMatchObject({ status: 503, retryAfter: 150_000 });
    expect(clock.slept).toEqual([90_000]);
    client.close();
  });

  it('with retries: 0 a 503 reaches the caller at once, with retryAfter in ms', async () => {
    const client = fake.client({ retries: 5, retryDelay: 1 });
    const c = fake.addContainer({ priority: 1 });
    fake.override('containers.lock', { status: 503, body: { errors: ['busy'] }, headers: { 'Retry-After': '7' } });
    let e: unknown;
    try {
      await client.lockContainer(c.uuid, { retries: 0 });
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(ArvadosApiError);
    expect((e as ArvadosApiError).retryAfter).toBe(7000);
    expect((e as ArvadosApiError).status).toBe(503);
    expect(fake.count('containers.lock')).toBe(1);
    client.close();
  });

  it("emits one 'request' event per attempt, with path patterns and error classes", async () => {
    const client = fake.client({ retries: 2, retryDelay: 1 });
    const events: RequestEvent[] = [];
    client.on('request', (ev) => events.push(ev));
    const c = fake.addContainer({ priority: 1 });
    fake.override('containers.get', { status: 500, body: {}, times: 1 });
    await client.getContainer(c.uuid);
    fake.override('containers.get', { status: 200, body: { uuid: c.uuid }, times: 1 });
    await client.getContainer(c.uuid);
    expect(events.map(({ durationMs, ...rest }) => (expect(durationMs).toBeGreaterThanOrEqual(0), rest))).toEqual([
      { method: 'GET', path: 'containers/{uuid}', status: 500, attempt: 1, errorClass: 'http' },
      { method: 'GET', path: 'containers/{uuid}', status: 200, attempt: 2 },
      { method: 'GET', path: 'containers/{uuid}', status: 200, attempt: 1, errorClass: 'protocol' },
      { method: 'GET', path: 'containers/{uuid}', status: 200, attempt: 2 },
    ]);
    client.close();
  });

  it('a listener that throws does not disturb the call', async () => {
    const client = fake.client({ retries: 0 });
    client.on('request', () => {
      throw new Error('listener bug');
    });
    expect((await client.currentAuthorization()).uuid).toBe(fake.rootToken.uuid);
    client.close();
  });
});
