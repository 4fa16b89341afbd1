// The event listener: container events from the websocket stream become
// debounced wakeups; bad messages are ignored; a lost or refused connection is
// retried with capped exponential backoff (on an injected clock: no real
// sleeps); the token never shows in what it reports; TLS is verified.
import { afterEach, describe, expect, it } from '@jest/globals';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { ContainerEventStream, type ContainerEventStreamOptions } from '../../src/dispatcher/events.js';
import { Dispatcher, type DispatcherOptions } from '../../src/index.js';
import { FakeArvados } from '../../src/testing/index.js';
import { realClock, type Clock } from '../../src/util/sleep.js';
import { waitFor } from '../helpers/wait.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function startFake(opts: ConstructorParameters<typeof FakeArvados>[0] = {}): Promise<FakeArvados> {
  const fake = await new FakeArvados(opts).start();
  cleanup.push(() => fake.stop());
  return fake;
}

/**
 * A clock whose reconnect sleeps are recorded and end at once (or when
 * released). The listener's other timers, the event debounce (5 ms) and the
 * idle timeout (180 s), run on the real clock: they are not what these
 * tests count.
 */
function fakeClock(opts: { hold?: boolean } = {}) {
  const delays: number[] = [];
  const held: Array<() => void> = [];
  const clock: Clock = {
    now: () => Date.now(),
    sleep: (ms, signal) =>
      ms <= 5 || ms >= 180_000 ? realClock.sleep(ms, signal) : new Promise<void>((resolve, reject) => {
        delays.push(ms);
        if (signal?.aborted) return reject(signal.reason);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
        if (opts.hold) held.push(resolve);
        else setImmediate(resolve);
      }),
  };
  return { clock, delays, release: () => held.splice(0).forEach((r) => r()) };
}

function listen(opts: ContainerEventStreamOptions) {
  const events = new ContainerEventStream({ random: () => 1, ...opts });
  const wakes: string[][] = [];
  const reasons: string[] = [];
  const unavailable: string[] = [];
  let connects = 0;
  events.on('wake', (u) => wakes.push(u));
  events.on('disconnected', (r) => reasons.push(r));
  events.on('unavailable', (r) => unavailable.push(r));
  events.on('connected', () => connects++);
  events.start();
  cleanup.push(() => events.stop());
  return { events, wakes, reasons, unavailable, connects: () => connects };
}

/** A websocket server on 127.0.0.1 whose behaviour the test scripts. */
async function scriptedServer(onConnection: (ws: WebSocket, url: string) => void): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws, req) => onConnection(ws, req.url ?? ''));
  cleanup.push(() => new Promise<void>((r) => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => r());
  }));
  return `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/websocket`;
}

describe('ContainerEventStream', () => {
  it('wakes once after subscribing, then on container events, coalescing bursts into one wake', async () => {
    const fake = await startFake();
    const l = listen({ url: fake.websocketUrl!, token: fake.rootToken.token, ca: fake.caCert, debounce: 30 });
    await waitFor(() => l.connects() === 1 && l.wakes.length === 1, 'the first subscription');
    expect(l.wakes[0]).toEqual([]);
    const a = fake.addContainer();
    const b = fake.addContainer();
    fake.setPriority(a.uuid, 9);
    await waitFor(() => l.wakes.length === 2, 'a wake for the burst');
    expect(l.wakes[1].sort()).toEqual([a.uuid, b.uuid].sort());
    fake.setPriority(b.uuid, 3);
    await waitFor(() => l.wakes.length === 3, 'a wake for a later change');
    expect(l.wakes[2]).toEqual([b.uuid]);
  });

  it('ignores messages that are not container events and keeps the connection', async () => {
    const c1 = 'zzzzz-dz642-aaaaaaaaaaaaaaa';
    const url = await scriptedServer((ws) => {
      ws.on('message', () => {
        ws.send('{"status":200}');
        for (const m of [
          'not json', '[1,2]', 'null', '42', '{}', '{"status":400}',
          JSON.stringify({ msgID: 1, object_uuid: 'zzzzz-4zz18-aaaaaaaaaaaaaaa', object_kind: 'arvados#collection', event_type: 'update' }),
          JSON.stringify({ msgID: 2, object_uuid: '../../etc/passwd', event_type: 'update' }),
          JSON.stringify({ msgID: 3, object_uuid: c1, event_type: 'blip' }),
          JSON.stringify({ msgID: 4, object_uuid: 12, event_type: 'update' }),
        ]) ws.send(m);
        ws.send(Buffer.from([1, 2, 3]), { binary: true });
        setTimeout(() => ws.send(JSON.stringify({ msgID: 5, object_uuid: c1, event_type: 'update', properties: {} })), 20);
      });
    });
    const l = listen({ url, token: 'tok-0123456789', debounce: 1 });
    await waitFor(() => l.wakes.some((w) => w.length > 0), 'the one real event');
    expect(l.wakes.filter((w) => w.length > 0)).toEqual([[c1]]);
    expect(l.events.connected).toBe(true);
    expect(l.reasons).toEqual([]);
  });

  it('reconnects after a dropped connection and wakes again, since events may have been missed', async () => {
    const fake = await startFake();
    const { clock, delays } = fakeClock();
    const l = listen({ url: fake.websocketUrl!, token: fake.rootToken.token, ca: fake.caCert, clock, minBackoff: 100 });
    await waitFor(() => l.connects() === 1, 'the first subscription');
    fake.dropWebsocketConnections();
    await waitFor(() => l.connects() === 2, 'a new subscription');
    expect(delays).toEqual([100]);
    await waitFor(() => l.wakes.length >= 2, 'a wake after the reconnect');
    const c = fake.addContainer();
    await waitFor(() => l.wakes.some((w) => w.includes(c.uuid)), 'events on the new connection');
  });

  it('backs off exponentially up to the cap while the stream refuses connections, then resets', async () => {
    const fake = await startFake();
    fake.setWebsocketAvailable(false);
    const { clock, delays, release } = fakeClock({ hold: true });
    const l = listen({ url: fake.websocketUrl!, token: fake.rootToken.token, ca: fake.caCert, clock, minBackoff: 100, maxBackoff: 1000 });
    for (let i = 1; i <= 6; i++) {
      await waitFor(() => delays.length === i, `attempt ${i}`);
      release();
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(l.reasons[0]).toMatch(/503/);
    fake.setWebsocketAvailable(true);
    await waitFor(() => l.connects() === 1, 'the connection once the stream is back');
    fake.dropWebsocketConnections();
    await waitFor(() => delays.length === 7, 'the next delay');
    expect(delays[6]).toBe(100);
  });

  it('backs off reconnects of a stream that drops right after each subscription (issue 18 item 11)', async () => {
    const url = await scriptedServer((ws) => {
      ws.on('message', () => {
        ws.send(JSON.stringify({ status: 200 }));
        ws.close();
      });
    });
    const { clock, delays } = fakeClock();
    const l = listen({ url, token: 'x-token', clock, minBackoff: 100, maxBackoff: 1000 });
    await waitFor(() => delays.length >= 6, 'six reconnects');
    expect(delays.slice(0, 6)).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(l.connects()).toBeGreaterThanOrEqual(6);
  });

  it('never shows the token in what it reports, even when the server echoes it', async () => {
    const token = 'v2/zzzzz-gj3su-000000000000000/secretsecretsecret0123456789';
    let seenUrl = '';
    const url = await scriptedServer((ws, u) => {
      seenUrl = u;
      // Close reasons are at most 123 bytes: echo the token alone.
      ws.close(4000, token);
    });
    const { clock } = fakeClock({ hold: true });
    const l = listen({ url, token, clock });
    await waitFor(() => l.reasons.length === 1, 'the close');
    expect(seenUrl).toContain(`api_token=${encodeURIComponent(token)}`);
    expect(l.reasons[0]).toMatch(/4000/);
    expect(l.reasons[0]).not.toContain('secretsecret');
    expect(l.reasons[0]).not.toContain(encodeURIComponent(token));
  });

  it('verifies TLS: an untrusted certificate fails unless insecure', async () => {
    const fake = await startFake();
    const { clock } = fakeClock({ hold: true });
    const strict = listen({ url: fake.websocketUrl!, token: fake.rootToken.token, clock });
    await waitFor(() => strict.reasons.length === 1, 'the refused handshake');
    expect(strict.reasons[0]).toMatch(/self.signed|certificate/i);
    expect(strict.connects()).toBe(0);
    const insecure = listen({ url: fake.websocketUrl!, token: fake.rootToken.token, insecure: true });
    await waitFor(() => insecure.connects() === 1, 'the insecure connection');
  });

  it('gives up, and says so, when the cluster advertises no event stream', async () => {
    const l = listen({ url: async () => undefined, token: 'x-token' });
    await waitFor(() => l.unavailable.length === 1, 'unavailable');
    expect(l.unavailable[0]).toMatch(/no websocketUrl/);
    const bad = listen({ url: 'ftp://example.invalid/websocket', token: 'x-token' });
    await waitFor(() => bad.unavailable.length === 1, 'unavailable for a non-websocket URL');
  });

  it('stops promptly while waiting to reconnect and emits nothing afterwards', async () => {
    const fake = await startFake();
    fake.setWebsocketAvailable(false);
    const { clock, delays } = fakeClock({ hold: true });
    const l = listen({ url: fake.websocketUrl!, token: fake.rootToken.token, ca: fake.caCert, clock });
    await waitFor(() => delays.length === 1, 'a reconnect wait');
    await l.events.stop();
    const n = l.reasons.length;
    fake.setWebsocketAvailable(true);
    fake.addContainer();
    await new Promise((r) => setImmediate(r));
    expect(l.reasons.length).toBe(n);
    expect(l.connects()).toBe(0);
  });
});

describe('Dispatcher with events', () => {
  function dispatcherOn(fake: FakeArvados, opts: Partial<DispatcherOptions> = {}) {
    const handed: string[] = [];
    const d = new Dispatcher({
      client: fake.client({ retries: 0 }),
      pollInterval: 3_600_000,
      handleSignals: false,
      events: { url: fake.websocketUrl, ca: fake.caCert },
      ...opts,
      runContainer: async (_d, c, updates) => {
        handed.push(c.uuid);
        for await (const _ of updates) void _;
      },
    });
    void d.run();
    cleanup.push(() => d.stop());
    return { d, handed };
  }

  it('refuses a ws:// event URL from the discovery document when the API is https, and says so once (issue 18 item 8)', async () => {
    const fake = await startFake();
    let connections = 0;
    const ws = await scriptedServer(() => connections++);
    const doc = await fake.client().discovery();
    fake.override('discovery', { status: 200, body: { ...doc, websocketUrl: ws } });
    const warnings: string[] = [];
    const { d } = dispatcherOn(fake, { pollInterval: 20, events: { ca: fake.caCert } });
    d.on('warning', (w) => warnings.push(w));
    await waitFor(() => d.status.cycles >= 5, 'some cycles');
    expect(connections).toBe(0);
    expect(warnings.filter((w) => /refusing the cleartext event stream .*ws:\/\/127\.0\.0\.1:\d+\/websocket.*insecure/.test(w))).toHaveLength(1);
    expect(warnings.join('\n')).not.toContain(fake.rootToken.token);
    // With insecure set, the operator allowed it.
    const allowed = listen({ url: ws, token: 'x-token', insecure: true, requireTls: false });
    await waitFor(() => connections === 1, 'the allowed cleartext connection');
    void allowed;
  });

  it('polls at once when a container is created, long before the poll interval', async () => {
    const fake = await startFake();
    const { d, handed } = dispatcherOn(fake);
    await waitFor(() => d.status.cycles >= 1 && fake.websocketConnections === 1, 'the first cycle and a subscription');
    const c = fake.addContainer({ priority: 3 });
    // With an hour between polls, any hand-over now comes from an event-woken cycle.
    await waitFor(() => handed.includes(c.uuid), 'the hand-over');
    expect(fake.container(c.uuid)?.state).toBe('Locked');
  });

  it('falls back to polling while the stream is down, and reconnects when it is back', async () => {
    const fake = await startFake();
    fake.setWebsocketAvailable(false);
    const { d, handed } = dispatcherOn(fake, { pollInterval: 50 });
    const a = fake.addContainer();
    await waitFor(() => handed.includes(a.uuid), 'a hand-over by polling alone');
    expect(fake.websocketConnections).toBe(0);
    fake.setWebsocketAvailable(true);
    await waitFor(() => fake.websocketConnections === 1, 'the reconnection', 30_000);
    expect(d.status.healthy).toBe(true);
  });

  it('reconnects after a dropped connection and is woken by events again', async () => {
    const fake = await startFake();
    const { handed } = dispatcherOn(fake);
    await waitFor(() => fake.websocketConnections === 1, 'a subscription');
    fake.dropWebsocketConnections();
    await waitFor(() => fake.websocketConnections === 1, 'the reconnection', 30_000);
    const c = fake.addContainer();
    await waitFor(() => handed.includes(c.uuid), 'an event-woken hand-over');
  });

  it('a flood of events about containers it does not hold pulls at most one poll forward per interval (issue 18 item 11)', async () => {
    const fake = await startFake({ tls: false });
    let flood: NodeJS.Timeout | undefined;
    const url = await scriptedServer((ws) => {
      ws.on('message', () => {
        ws.send(JSON.stringify({ status: 200 }));
        let i = 0;
        flood = setInterval(() => {
          for (let k = 0; k < 5; k++) ws.send(JSON.stringify({ object_uuid: `zzzzz-dz642-${String(i++).padStart(15, '0')}`, event_type: 'update' }));
        }, 5);
      });
    });
    cleanup.push(() => clearInterval(flood));
    const { d } = dispatcherOn(fake, { pollInterval: 1_000, events: { url } });
    await waitFor(() => flood !== undefined && d.status.cycles >= 1, 'the flood and a first cycle');
    const before = d.status.cycles;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 2_500));
    const elapsed = Date.now() - t0;
    // One regular and at most one extra poll per interval, plus the one in progress.
    expect(d.status.cycles - before).toBeLessThanOrEqual(2 * Math.ceil(elapsed / 1_000) + 1);
    // Polling goes on.
    expect(d.status.cycles - before).toBeGreaterThanOrEqual(Math.floor(elapsed / 1_000));
  });

  it('opens no connection with events: false', async () => {
    const fake = await startFake();
    const { d, handed } = dispatcherOn(fake, { events: false, pollInterval: 20 });
    const c = fake.addContainer();
    await waitFor(() => handed.includes(c.uuid) && d.status.cycles >= 3, 'a hand-over and three cycles');
    expect(fake.websocketConnections).toBe(0);
    expect(fake.eventsSent).toBe(0);
  });
});
