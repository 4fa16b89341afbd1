/**
 * FakeArvados' event stream: the websocket protocol v0 as Arvados'
 * `services/ws` serves it at `/websocket?api_token=...`.
 *
 * What the real server does, and so this one:
 * - the token travels in the URL; an invalid one still gets a session, which
 *   simply never receives an event (every event is checked against what the
 *   token may read);
 * - `{"method":"subscribe","filters":[...]}` answers `{"status":200}`;
 *   `unsubscribe` with the same filters answers 200, otherwise 400; a frame
 *   that is not JSON, or has another method, answers `{"status":400}`;
 * - of the filters, only `["event_type","in",[...]]` and `created_at`
 *   comparisons are honoured; others (e.g. on `object_uuid`) are ignored, so
 *   clients must check `object_kind` themselves;
 * - an event is `{"msgID","id","uuid","object_uuid","object_owner_uuid",
 *   "object_kind","event_type","event_at","properties"}` where `properties`
 *   holds `old_attributes`/`new_attributes` cut down to `state`,
 *   `owner_uuid` and a few other keys, or, for a log with a `text`
 *   property, that log's own properties;
 * - `last_log_id` replays the events after that id (from the last 10 minutes);
 * - an idle connection gets `{}` every ping interval.
 *
 * @module
 */
import type * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { randomBytes } from 'node:crypto';
import type { StoreChange } from './store.js';

/** The keys of old/new attributes that services/ws passes on. */
const SENT_ATTRIBUTES = ['is_trashed', 'name', 'owner_uuid', 'portable_data_hash', 'requesting_container_uuid', 'state'];
const KIND_BY_INFIX: Record<string, string> = {
  dz642: 'arvados#container',
  xvhdp: 'arvados#containerRequest',
  '57u5n': 'arvados#log',
  '4zz18': 'arvados#collection',
  j7d0g: 'arvados#group',
  tpzed: 'arvados#user',
  gj3su: 'arvados#apiClientAuthorization',
};
/** How long `last_log_id` reaches back, as in services/ws. */
const REPLAY_WINDOW_MS = 10 * 60_000;
const MAX_KEPT_EVENTS = 10_000;
const SUBSCRIBE_OK = '{"status":200}';
const SUBSCRIBE_FAIL = '{"status":400}';

/** One row of the fake's `logs` table as the event stream sees it. */
interface LoggedEvent {
  id: number;
  uuid: string;
  object_uuid: string;
  object_owner_uuid: string;
  event_type: string;
  event_at: string;
  created_ms: number;
  created_at: string;
  properties: Record<string, unknown>;
}

type Matcher = (e: LoggedEvent) => boolean;

interface Subscription {
  filtersJson: string;
  match: Matcher[];
}

interface Session {
  ws: WebSocket;
  /** Whether the URL's token is valid (else nothing is delivered). */
  reader: boolean;
  subs: Subscription[];
  msgId: number;
}

/** Options of {@link FakeEventStream}. */
export interface FakeEventStreamOptions {
  /** Whether the token in the URL may read events (true for any valid token). */
  canRead: (token: string | undefined) => boolean;
  /** Cluster id, for the log UUIDs. */
  clusterId: string;
  /** Milliseconds between `{}` pings on an idle connection. Default 60 000 (the API's SendTimeout). */
  pingInterval?: number;
}

/** Serves `/websocket` on FakeArvados' HTTP(S) server. */
export class FakeEventStream {
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 2 << 20 });
  readonly #sessions = new Set<Session>();
  readonly #events: LoggedEvent[] = [];
  readonly #opts: FakeEventStreamOptions;
  #nextId = 0;
  #available = true;
  #pings: NodeJS.Timeout | undefined;
  #sent = 0;

  constructor(opts: FakeEventStreamOptions) {
    this.#opts = opts;
  }

  /** Whether new connections are accepted (when false, upgrades get HTTP 503). */
  get available(): boolean {
    return this.#available;
  }

  set available(v: boolean) {
    this.#available = v;
    if (!v) this.dropConnections();
  }

  /** Open connections. */
  get connections(): number {
    return this.#sessions.size;
  }

  /** Event messages sent so far, over all connections. */
  get sent(): number {
    return this.#sent;
  }

  /**
   * Handles an HTTP upgrade for `/websocket`; returns false for any other
   * path, so the caller can refuse it.
   */
  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/websocket') return false;
    if (!this.#available) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return true;
    }
    const token = url.searchParams.get('api_token') ?? undefined;
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#open(ws, this.#opts.canRead(token)));
    return true;
  }

  /** Records a change (a row of the `logs` table) and sends it to matching sessions. */
  publish(change: StoreChange): void {
    const now = Date.now();
    const e: LoggedEvent = {
      id: ++this.#nextId,
      uuid: `${this.#opts.clusterId}-57u5n-${randomBytes(8).toString('hex').slice(0, 15)}`,
      object_uuid: change.object_uuid,
      object_owner_uuid: change.object_owner_uuid ?? '',
      event_type: change.event_type,
      event_at: change.event_at,
      created_ms: now,
      created_at: new Date(now).toISOString().replace('Z', '000000Z'),
      properties: change.properties ? { ...change.properties } : {
        old_attributes: pick(change.old_attributes),
        new_attributes: pick(change.new_attributes),
      },
    };
    this.#events.push(e);
    if (this.#events.length > MAX_KEPT_EVENTS) this.#events.splice(0, this.#events.length - MAX_KEPT_EVENTS);
    for (const s of this.#sessions) if (s.reader && s.subs.some((sub) => sub.match.every((m) => m(e)))) this.#send(s, e);
  }

  /** Drops every connection without a close handshake, as a failing proxy would. */
  dropConnections(): void {
    for (const s of this.#sessions) s.ws.terminate();
    this.#sessions.clear();
  }

  /** Closes every connection and stops the ping timer. */
  close(): void {
    this.dropConnections();
    clearInterval(this.#pings);
    this.#pings = undefined;
    this.#wss.close();
  }

  #open(ws: WebSocket, reader: boolean): void {
    const s: Session = { ws, reader, subs: [], msgId: 0 };
    this.#sessions.add(s);
    ws.on('close', () => this.#sessions.delete(s));
    ws.on('error', () => this.#sessions.delete(s));
    ws.on('message', (data, isBinary) => this.#receive(s, isBinary ? '' : String(data)));
    this.#pings ??= setInterval(() => {
      // An empty message keeps idle connections (and the proxies in between) alive.
      for (const x of this.#sessions) if (x.ws.bufferedAmount === 0) x.ws.send('{}');
    }, this.#opts.pingInterval ?? 60_000);
    this.#pings.unref();
  }

  #receive(s: Session, text: string): void {
    let msg: { method?: unknown; filters?: unknown; last_log_id?: unknown } | undefined;
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) msg = parsed as typeof msg;
    } catch {
      msg = undefined;
    }
    if (msg?.method === 'subscribe') {
      const sub = prepare(msg.filters);
      s.ws.send(SUBSCRIBE_OK);
      s.subs.push(sub);
      const last = typeof msg.last_log_id === 'number' ? msg.last_log_id : 0;
      if (last > 0 && s.reader) {
        const since = Date.now() - REPLAY_WINDOW_MS;
        for (const e of this.#events) if (e.id > last && e.created_ms > since && sub.match.every((m) => m(e))) this.#send(s, e);
      }
      return;
    }
    if (msg?.method === 'unsubscribe') {
      const key = JSON.stringify(msg.filters ?? null);
      const i = s.subs.findIndex((x) => x.filtersJson === key);
      if (i >= 0) {
        s.subs.splice(i, 1);
        s.ws.send(SUBSCRIBE_OK);
        return;
      }
    }
    s.ws.send(SUBSCRIBE_FAIL);
  }

  #send(s: Session, e: LoggedEvent): void {
    const infix = e.object_uuid.slice(6, 11);
    s.ws.send(JSON.stringify({
      msgID: ++s.msgId,
      id: e.id,
      uuid: e.uuid,
      object_uuid: e.object_uuid,
      object_owner_uuid: e.object_owner_uuid,
      object_kind: KIND_BY_INFIX[infix] ?? '',
      event_type: e.event_type,
      event_at: e.event_at,
      properties: e.properties,
    }));
    this.#sent++;
  }
}

function pick(attrs: Readonly<Record<string, unknown>> | null): Record<string, unknown> | undefined {
  if (!attrs) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of SENT_ATTRIBUTES) if (k in attrs) out[k] = attrs[k];
  return out;
}

/** The filters services/ws honours; the rest are ignored, as there. */
function prepare(filters: unknown): Subscription {
  const sub: Subscription = { filtersJson: JSON.stringify(filters ?? null), match: [] };
  if (!Array.isArray(filters)) return sub;
  for (const f of filters) {
    if (!Array.isArray(f) || f.length !== 3) continue;
    const [col, op, operand] = f as [unknown, unknown, unknown];
    if (col === 'event_type' && op === 'in' && Array.isArray(operand)) {
      const types = operand.filter((x): x is string => typeof x === 'string');
      sub.match.push((e) => types.includes(e.event_type));
    } else if (col === 'created_at' && typeof op === 'string' && typeof operand === 'string') {
      const t = Date.parse(operand);
      if (Number.isNaN(t)) continue;
      const cmp: Record<string, (x: number) => boolean> = {
        '>=': (x) => x >= t,
        '<=': (x) => x <= t,
        '>': (x) => x > t,
        '<': (x) => x < t,
        '=': (x) => x === t,
      };
      const fn = cmp[op];
      if (fn) sub.match.push((e) => fn(e.created_ms));
    }
  }
  return sub;
}
