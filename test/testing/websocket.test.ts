// FakeArvados' event stream speaks the websocket protocol v0 of Arvados'
// services/ws: the token in the URL, subscribe/unsubscribe answers, events on
// container changes with their cut-down attributes, and the filters it honours.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import WebSocket from 'ws';
import { FakeArvados } from '../../src/testing/index.js';
import { raw } from '../helpers/raw.js';
import { waitFor } from '../helpers/wait.js';

interface Conn {
  ws: WebSocket;
  messages: Record<string, unknown>[];
  closed: boolean;
}

let fake: FakeArvados;
const conns: Conn[] = [];

async function connect(token = fake.rootToken.token): Promise<Conn> {
  const ws = new WebSocket(`${fake.websocketUrl!}?api_token=${encodeURIComponent(token)}`, { ca: fake.caCert });
  const c: Conn = { ws, messages: [], closed: false };
  conns.push(c);
  ws.on('message', (d) => c.messages.push(JSON.parse(String(d)) as Record<string, unknown>));
  ws.on('close', () => (c.closed = true));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return c;
}

async function send(c: Conn, msg: unknown, expectStatus: number): Promise<void> {
  const before = c.messages.length;
  c.ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
  const reply = await waitFor(() => c.messages.slice(before).find((m) => 'status' in m), 'a status reply');
  expect(reply).toEqual({ status: expectStatus });
}

const events = (c: Conn) => c.messages.filter((m) => 'event_type' in m);

beforeEach(async () => {
  fake = await new FakeArvados({ websocketPingInterval: 50 }).start();
});
afterEach(async () => {
  for (const c of conns.splice(0)) c.ws.terminate();
  await fake.stop();
});

describe('FakeArvados event stream', () => {
  it('advertises websocketUrl in the discovery document', async () => {
    const res = await raw(fake, { method: 'GET', path: '/discovery/v1/apis/arvados/v1/rest' });
    expect(res.json?.websocketUrl).toBe(`wss://127.0.0.1:${fake.port}/websocket`);
    expect(fake.websocketUrl).toBe(res.json?.websocketUrl);
  });

  it('answers subscribe with status 200 and sends create and update events of containers', async () => {
    const c = await connect();
    await send(c, { method: 'subscribe', filters: [['object_uuid', 'is_a', 'arvados#container']] }, 200);
    const ctr = fake.addContainer();
    fake.setPriority(ctr.uuid, 5);
    const got = await waitFor(() => events(c).length >= 2 && events(c), 'two events');
    expect(got[0]).toMatchObject({
      msgID: 1,
      object_uuid: ctr.uuid,
      object_kind: 'arvados#container',
      event_type: 'create',
      event_at: ctr.modified_at,
      properties: { new_attributes: { state: 'Queued', owner_uuid: ctr.owner_uuid } },
    });
    expect(got[0].id).toEqual(expect.any(Number));
    expect(got[0].uuid).toMatch(/^zzzzz-57u5n-[0-9a-z]{15}$/);
    expect(got[1]).toMatchObject({
      msgID: 2,
      event_type: 'update',
      properties: { old_attributes: { state: 'Queued' }, new_attributes: { state: 'Queued' } },
    });
    // Only the attributes services/ws passes on, never priority or mounts.
    expect(Object.keys((got[1].properties as { new_attributes: object }).new_attributes).sort()).toEqual(['owner_uuid', 'state']);
  });

  it('honours event_type filters and ignores filters services/ws does not implement', async () => {
    const c = await connect();
    await send(c, { method: 'subscribe', filters: [['event_type', 'in', ['update']], ['object_uuid', '=', 'nothing-matches']] }, 200);
    const ctr = fake.addContainer();
    fake.setPriority(ctr.uuid, 2);
    const got = await waitFor(() => events(c).length >= 1 && events(c), 'an update event');
    expect(got.map((e) => e.event_type)).toEqual(['update']);
  });

  it('answers 400 to frames that are not JSON or name no known method, and keeps the session', async () => {
    const c = await connect();
    await send(c, '^]beep', 400);
    await send(c, { 21: 12 }, 400);
    await send(c, { method: 'unsubscribe', filters: [['event_type', 'in', ['x']]] }, 400);
    await send(c, { method: 'subscribe', filters: [['event_type', 'in', ['x']]] }, 200);
    await send(c, { method: 'unsubscribe', filters: [['event_type', 'in', ['x']]] }, 200);
    expect(c.closed).toBe(false);
  });

  it('gives an invalid token a session but never an event', async () => {
    const bad = await connect('not-a-valid-token');
    const good = await connect();
    await send(bad, { method: 'subscribe' }, 200);
    await send(good, { method: 'subscribe' }, 200);
    fake.addContainer();
    await waitFor(() => events(good).length === 1, 'the valid session to get the event');
    expect(events(bad)).toEqual([]);
  });

  it('sends {} pings on idle connections', async () => {
    const c = await connect();
    await waitFor(() => c.messages.some((m) => Object.keys(m).length === 0), 'a ping');
  });

  it('replays events after last_log_id', async () => {
    const first = await connect();
    await send(first, { method: 'subscribe' }, 200);
    fake.addContainer();
    const [e1] = await waitFor(() => events(first).length === 1 && events(first), 'the first event');
    const later = fake.addContainer();
    const c = await connect();
    await send(c, { method: 'subscribe', last_log_id: e1.id }, 200);
    const replayed = await waitFor(() => events(c).length === 1 && events(c), 'the replayed event');
    expect(replayed[0].object_uuid).toBe(later.uuid);
  });

  it('can drop connections, refuse new ones with 503, and serve again', async () => {
    const c = await connect();
    fake.dropWebsocketConnections();
    await waitFor(() => c.closed, 'the connection to drop');
    fake.setWebsocketAvailable(false);
    await expect(connect()).rejects.toThrow(/503/);
    fake.setWebsocketAvailable(true);
    await connect();
    expect(fake.websocketConnections).toBe(1);
  });

  it('serves no event stream when told not to', async () => {
    const plain = await new FakeArvados({ websocket: false }).start();
    try {
      expect(plain.websocketUrl).toBeUndefined();
      const res = await raw(plain, { method: 'GET', path: '/discovery/v1/apis/arvados/v1/rest' });
      expect(res.json).not.toHaveProperty('websocketUrl');
      const ws = new WebSocket(`wss://127.0.0.1:${plain.port}/websocket?api_token=x`, { ca: plain.caCert });
      await expect(new Promise((resolve, reject) => {
        ws.once('open', resolve);
        ws.once('error', reject);
      })).rejects.toThrow(/404/);
    } finally {
      await plain.stop();
    }
  });
});
