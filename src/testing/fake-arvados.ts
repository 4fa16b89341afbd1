/**
 * FakeArvados: an in-process Arvados API server on 127.0.0.1 for testing
 * dispatchers, over HTTPS with a fresh self-signed certificate (or plain
 * HTTP). It answers the calls a dispatcher makes with the API server's rules
 * and error bodies, and adds what tests need: an admin side door, request
 * counters, fault injection and added latency.
 *
 * @module
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { ArvadosClient, type ArvadosClientOptions } from '../client/client.js';
import { seededRandom } from '../prng.js';
import type { Container, ContainerState, LogRecord } from '../types.js';
import { ApiError } from './errors.js';
import {
  BAD_IDENTITIES,
  ENDLESS_ITEM,
  ROUTE_LIMITED_FAULTS,
  HOSTILE_FAULTS,
  corruptAnswer,
  echoPage,
  type HostileFaultKind,
} from './hostile.js';
import { CONTAINER_ATTRIBUTES } from './query.js';
import { Store, type Transition } from './store.js';
import type { TokenRecord } from './tokens.js';
import { selfSignedCert } from './tls.js';
import { FakeEventStream } from './websocket.js';

/** Names of the routes FakeArvados serves, as used by counters, faults and overrides. */
export type RouteName =
  | 'discovery'
  | 'current'
  | 'containers.list'
  | 'containers.get'
  | 'containers.create'
  | 'containers.update'
  | 'containers.lock'
  | 'containers.unlock'
  | 'logs.create'
  | 'logs.list'
  | 'unknown';

/**
 * Ordinary injected failures, what a healthy cluster does on a bad day:
 * - `500`, `502`, `503` (the last two with `Retry-After`), `html` (a 502
 *   proxy error page): answered *before* the request is processed;
 * - `reset` (connection closed with no answer), `truncated` (a 200 whose JSON
 *   is cut short), `hang` (no answer until the client gives up): applied
 *   *after* the request was processed, so the change happened but the client
 *   cannot know. That is the hard case for lock and update calls.
 */
export type OrdinaryFaultKind = 500 | 502 | 503 | 'html' | 'reset' | 'truncated' | 'hang';

/**
 * An injected failure: an {@link OrdinaryFaultKind} or a
 * {@link HostileFaultKind} (malformed items, token-echoing proxy pages,
 * 200-with-errors, endless bodies, bad identities).
 */
export type FaultKind = OrdinaryFaultKind | HostileFaultKind;

/** Every ordinary kind: the default of {@link FaultOptions.kinds}. */
export const ORDINARY_FAULTS: readonly OrdinaryFaultKind[] = [500, 502, 503, 'html', 'reset', 'truncated', 'hang'];

/**
 * One fault injection rule. Several rules may be given at once (an array):
 * each request is checked against them in order, each with its own rate and
 * PRNG, and the first that fires decides the answer.
 */
export interface FaultOptions {
  /** Probability in [0, 1] that a request fails. */
  rate: number;
  /**
   * Kinds to choose from, uniformly among those that apply to the route
   * (`bad-identity` applies to `current` only). Default: the ordinary kinds;
   * hostile kinds are only served when named.
   */
  kinds?: readonly FaultKind[];
  /** Routes that may fail. Default: every route but `discovery`. */
  routes?: readonly RouteName[];
  /** Seed for this rule's PRNG (whether it fires, which kind, which variant), for reproducible runs. Default: random. */
  seed?: number;
  /** `Retry-After` seconds sent with 502/503. Default 0. */
  retryAfter?: number;
}

/** A canned answer for {@link FakeArvados.override}. */
export interface OverrideResponse {
  status: number;
  /** A JSON-able value, or a raw string sent as is. */
  body?: unknown;
  headers?: Record<string, string>;
  /** How many requests to answer this way; default: until cleared. */
  times?: number;
}

/** Options of {@link FakeArvados}. */
export interface FakeArvadosOptions {
  /** HTTPS with a generated self-signed certificate (default) or plain HTTP. */
  tls?: boolean;
  /** Five-character cluster id. Default `zzzzz`. */
  clusterId?: string;
  /** The server's page size cap (`API.MaxItemsPerResponse`). Default 1000. */
  maxItemsPerResponse?: number;
  /** Unlocks allowed before an unlock cancels instead (`Containers.MaxDispatchAttempts`). Default 10. */
  maxDispatchAttempts?: number;
  /** Milliseconds added to every request. Default 0. */
  latency?: number;
  /** Fault injection: one rule or several (see {@link FaultOptions}). */
  faults?: FaultOptions | readonly FaultOptions[];
  /** Port on 127.0.0.1; default: any free port. */
  port?: number;
  /** Keep a log of requests in {@link FakeArvados.requests}. Default true. */
  recordRequests?: boolean;
  /**
   * Serve the event stream (websocket protocol v0, as Arvados' services/ws)
   * at `/websocket` and advertise it as the discovery document's
   * `websocketUrl`. Default true.
   */
  websocket?: boolean;
  /** Milliseconds between `{}` pings on idle websocket connections. Default 60 000. */
  websocketPingInterval?: number;
}

/** One served request, as kept in {@link FakeArvados.requests}. */
export interface RequestRecord {
  route: RouteName;
  method: string;
  path: string;
  /** The container UUID in the path, if any. */
  uuid?: string;
  /** UUID of the token used, if it was valid. */
  tokenUuid?: string;
  status: number;
  requestId: string;
  /** The list parameters, for `containers.list`. */
  params?: Record<string, unknown>;
  fault?: FaultKind | 'override';
  /** What a hostile fault served, e.g. the JSON of the hostile uuid or identity. */
  faultDetail?: string;
}

/** A token for tests: its secret and its UUID. */
export interface FakeToken {
  token: string;
  uuid: string;
}

const JSON_PARAMS = new Set(['filters', 'order', 'select', 'where', 'container', 'log', 'limit', 'offset']);
const HASH_ATTRS = ['environment', 'mounts', 'runtime_constraints', 'runtime_status', 'command', 'scheduling_parameters'];

const CREATABLE_ATTRS = new Set<string>([...CONTAINER_ATTRIBUTES, 'secret_mounts', 'runtime_token']);
const STATES: readonly ContainerState[] = ['Queued', 'Locked', 'Running', 'Complete', 'Cancelled'];
const KNOWN_FAULTS = new Set<FaultKind>([...ORDINARY_FAULTS, ...HOSTILE_FAULTS]);

/** A fault rule with its PRNG. */
interface FaultRule {
  opts: FaultOptions;
  random: () => number;
}

/** Options of {@link FakeArvados.waitForState}. */
export interface WaitForStateOptions {
  /** Milliseconds before the wait rejects. Default 30 000; 0 for none. */
  timeout?: number;
  signal?: AbortSignal;
}

function decodeValue(key: string, v: unknown): unknown {
  if (typeof v !== 'string' || !JSON_PARAMS.has(key)) return v;
  const s = v.trim();
  if (s.startsWith('[') || s.startsWith('{') || s.startsWith('"')) {
    try {
      return JSON.parse(s);
    } catch {
      throw new ApiError(422, `Could not parse "${key}" param as JSON`);
    }
  }
  return v;
}

/**
 * An Arvados API server for tests.
 *
 * @example
 * ```ts
 * import { FakeArvados } from 'arvados-dispatch/testing';
 * const fake = await new FakeArvados().start();
 * const c = fake.addContainer({ priority: 10 });
 * const client = fake.client();           // trusts the fake's certificate
 * await client.lockContainer(c.uuid);
 * await fake.stop();
 * ```
 */
export class FakeArvados {
  /**
   * The data behind the server; use the methods below rather than this directly.
   *
   * @internal
   */
  readonly store: Store;
  /** Requests served so far (when `recordRequests` is on). */
  readonly requests: RequestRecord[] = [];
  /** The system root token, which dispatchers normally use. */
  readonly rootToken: FakeToken;
  readonly #opts: FakeArvadosOptions;
  readonly #tls?: { cert: string; key: string };
  #server?: http.Server;
  readonly #sockets = new Set<Socket>();
  readonly #counts = new Map<RouteName, number>();
  readonly #overrides = new Map<RouteName, OverrideResponse>();
  readonly #events?: FakeEventStream;
  #faults: FaultRule[] = [];
  #latency: number;
  #port = 0;

  constructor(opts: FakeArvadosOptions = {}) {
    this.#opts = opts;
    this.store = new Store({
      clusterId: opts.clusterId ?? 'zzzzz',
      maxDispatchAttempts: opts.maxDispatchAttempts ?? 10,
      maxItemsPerResponse: opts.maxItemsPerResponse ?? 1000,
    });
    const root = this.store.addToken({ uuid: `${this.store.clusterId}-gj3su-000000000000000`, admin: true });
    this.rootToken = { token: root.secret, uuid: root.uuid };
    if (opts.tls !== false) this.#tls = selfSignedCert();
    this.#latency = opts.latency ?? 0;
    this.setFaults(opts.faults);
    if (opts.websocket !== false) {
      const events = new FakeEventStream({
        clusterId: this.store.clusterId,
        canRead: (token) => this.store.authenticate(token) !== undefined,
        pingInterval: opts.websocketPingInterval,
      });
      this.store.onChange((change) => events.publish(change));
      this.#events = events;
    }
  }

  // ---- lifecycle ------------------------------------------------------------

  /** Starts listening on 127.0.0.1; resolves to `this`. */
  async start(): Promise<this> {
    if (this.#server) return this;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => void this.#handle(req, res);
    const server = this.#tls ? https.createServer({ cert: this.#tls.cert, key: this.#tls.key }, handler) : http.createServer(handler);
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    // A client that gives up on an untrusted certificate is not our error.
    server.on('tlsClientError', () => {});
    server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
      if (!this.#events?.handleUpgrade(req, socket, head)) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      }
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#opts.port ?? 0, '127.0.0.1', () => resolve());
    });
    this.#port = (server.address() as AddressInfo).port;
    return this;
  }

  /** Stops the server and drops every connection, including hanging ones. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    this.#events?.close();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  /** Same as {@link FakeArvados.stop}, for `await using fake = await new FakeArvados().start()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** `127.0.0.1:<port>`, the value for `ARVADOS_API_HOST` (prefixed with `http://` in plain HTTP mode). */
  get apiHost(): string {
    if (!this.#port) throw new Error('FakeArvados is not started');
    return this.#tls ? `127.0.0.1:${this.#port}` : `http://127.0.0.1:${this.#port}`;
  }

  /** The base URL, e.g. `https://127.0.0.1:41234`. */
  get url(): string {
    return `${this.#tls ? 'https' : 'http'}://127.0.0.1:${this.#port}`;
  }

  /** The TCP port it listens on, once started. */
  get port(): number {
    return this.#port;
  }

  /** The event stream's URL (`wss://127.0.0.1:<port>/websocket`), as the discovery document gives it; undefined when not served. */
  get websocketUrl(): string | undefined {
    return this.#events ? `${this.#tls ? 'wss' : 'ws'}://127.0.0.1:${this.#port}/websocket` : undefined;
  }

  /**
   * Makes the event stream refuse connections (HTTP 503, and every open one
   * dropped) or accept them again, while the discovery document still
   * advertises it: an event server that is down.
   */
  setWebsocketAvailable(available: boolean): void {
    if (this.#events) this.#events.available = available;
  }

  /** Drops every event stream connection without a close handshake. */
  dropWebsocketConnections(): void {
    this.#events?.dropConnections();
  }

  /** Open event stream connections. */
  get websocketConnections(): number {
    return this.#events?.connections ?? 0;
  }

  /** Event messages sent over the event stream so far. */
  get eventsSent(): number {
    return this.#events?.sent ?? 0;
  }

  /** The PEM certificate (in HTTPS mode), to trust the fake without turning verification off. */
  get caCert(): string | undefined {
    return this.#tls?.cert;
  }

  /** The cluster id, e.g. `zzzzz`. */
  get clusterId(): string {
    return this.store.clusterId;
  }

  /**
   * Environment variables pointing a client (or a child process) at this
   * server with `token` (default: the root token). HTTPS mode sets
   * `ARVADOS_API_HOST_INSECURE=1`, as a user would for a self-signed server.
   */
  env(token: string = this.rootToken.token): Record<string, string> {
    return {
      ARVADOS_API_HOST: this.apiHost,
      ARVADOS_API_TOKEN: token,
      ARVADOS_API_HOST_INSECURE: this.#tls ? '1' : '0',
    };
  }

  /**
   * An {@link ArvadosClient} for this server that verifies its certificate,
   * for requests and for the Dispatcher's event stream. The child processes
   * it hands credentials to (`credentialsEnv()`, as a runner gives them to
   * crunch-run) get `ARVADOS_API_HOST_INSECURE=1` in HTTPS mode, as from
   * {@link FakeArvados.env}: crunch-run's environment has no way to carry
   * the fake's certificate.
   */
  client(opts: Partial<ArvadosClientOptions> & { token?: string } = {}): ArvadosClient {
    const { token, ...rest } = opts;
    const o: ArvadosClientOptions = {
      apiHost: this.apiHost,
      apiToken: token ?? this.rootToken.token,
      ...(this.#tls ? { ca: this.#tls.cert } : {}),
      ...rest,
    };
    return this.#tls ? new FakeServerClient(o) : new ArvadosClient(o);
  }

  // ---- tokens ---------------------------------------------------------------

  /** Adds a token (admin by default, as dispatcher tokens are), e.g. for a second dispatcher. */
  addToken(opts: { admin?: boolean; uuid?: string; token?: string } = {}): FakeToken {
    const rec = this.store.addToken({ admin: opts.admin ?? true, uuid: opts.uuid, secret: opts.token });
    return { token: rec.secret, uuid: rec.uuid };
  }

  /** Makes a token invalid (401 from then on). */
  revokeToken(tokenOrUuid: string): void {
    this.store.revokeToken(tokenOrUuid);
  }

  // ---- admin side door ------------------------------------------------------

  /**
   * Adds a container (Queued, priority 1 unless given). Any field may be set,
   * e.g. `{state: 'Locked', locked_by_uuid: token.uuid}` for a restart test.
   */
  addContainer(attrs: Partial<Container> = {}): Container {
    return this.store.create(attrs);
  }

  /** Adds `n` containers; `attrs` may be a function of the index. */
  addContainers(n: number, attrs: Partial<Container> | ((i: number) => Partial<Container>) = {}): Container[] {
    const out: Container[] = [];
    for (let i = 0; i < n; i++) out.push(this.store.create(typeof attrs === 'function' ? attrs(i) : attrs));
    return out;
  }

  /** A copy of a container as the API shows it, or undefined. */
  container(uuid: string): Container | undefined {
    const row = this.store.row(uuid);
    return row && this.store.present(row);
  }

  /** Copies of every container, optionally only those in `state`. */
  containers(state?: ContainerState): Container[] {
    const out: Container[] = [];
    for (const row of this.store.rows()) if (!state || row.state === state) out.push(this.store.present(row));
    return out;
  }

  /**
   * Sets a container's priority directly, as the API does when requests
   * change (0 = cancel requested). The real API does it with a bare SQL
   * update that leaves `modified_at` alone and sends no event; `{ touch:
   * false }` does the same (default: a new `modified_at` and an event).
   */
  setPriority(uuid: string, priority: number, opts: { touch?: boolean } = {}): Container {
    return this.store.force(uuid, { priority }, opts.touch ?? true);
  }

  /** Sets attributes with no checks at all (test setup). */
  forceUpdate(uuid: string, attrs: Partial<Container>): Container {
    return this.store.force(uuid, attrs);
  }

  /**
   * Applies an update through the API's rules, as the given token
   * (default: the token holding the lock, else root), like crunch-run would.
   */
  updateAs(uuid: string, attrs: Partial<Container>, tokenUuid?: string): Container {
    const row = this.store.row(uuid);
    if (!row) throw new ApiError(404, 'Path not found');
    const who = tokenUuid ?? row.locked_by_uuid ?? this.rootToken.uuid;
    const caller = this.#tokenByUuid(who);
    return this.store.update(uuid, attrs as Record<string, unknown>, caller);
  }

  /** Locked -> Running, as crunch-run does when it starts. */
  startContainer(uuid: string): Container {
    return this.updateAs(uuid, { state: 'Running' });
  }

  /** Runs a Locked or Running container to Complete with `exitCode`, as crunch-run does. */
  completeContainer(uuid: string, exitCode = 0): Container {
    if (this.store.row(uuid)?.state === 'Locked') this.startContainer(uuid);
    return this.updateAs(uuid, { state: 'Complete', exit_code: exitCode, output: 'd41d8cd98f00b204e9800998ecf8427e+0', log: 'd41d8cd98f00b204e9800998ecf8427e+0' });
  }

  /** Cancels a container (admin). */
  cancelContainer(uuid: string): Container {
    return this.updateAs(uuid, { state: 'Cancelled' }, this.rootToken.uuid);
  }

  /** Deletes a container, so that it vanishes from every query. */
  deleteContainer(uuid: string): void {
    this.store.delete(uuid);
  }

  /** `logs` records created through the API. */
  get logs(): readonly LogRecord[] {
    return this.store.logs;
  }

  /** Every state change so far, in order. */
  get transitions(): readonly Transition[] {
    return this.store.transitions;
  }

  /** How many times each container went Locked -> Running (i.e. was started). */
  runCount(uuid: string): number {
    return this.store.transitions.filter((t) => t.uuid === uuid && t.to === 'Running').length;
  }

  /**
   * Resolves with the container once its state is `state` (or one of
   * `states`), at once if it already is. Event-driven: it wakes on the
   * store's change notifications, so there is no polling and no window in
   * which a state passed by goes unseen, as long as the wait starts before
   * the change (start it before the step that causes it).
   *
   * Rejects when `timeout` ms pass (default 30 000; 0 waits for ever), when
   * `signal` aborts (with its reason), when the container is deleted, or
   * when it is Cancelled without Cancelled being wanted (nothing can follow).
   *
   * @example
   * ```ts
   * const done = fake.waitForState(c.uuid, ['Complete', 'Cancelled'], { timeout: 10_000 });
   * void dispatcher.run();
   * expect((await done).state).toBe('Complete');
   * ```
   */
  waitForState(uuid: string, state: ContainerState | readonly ContainerState[], opts: WaitForStateOptions = {}): Promise<Container> {
    const wanted: readonly ContainerState[] = typeof state === 'string' ? [state] : state;
    const timeout = opts.timeout ?? 30_000;
    return new Promise<Container>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let unsubscribe = (): void => {};
      const onAbort = (): void => finish(() => reject(opts.signal?.reason));
      const finish = (settle: () => void): void => {
        unsubscribe();
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        settle();
      };
      const check = (): boolean => {
        const row = this.store.row(uuid);
        if (!row) {
          finish(() => reject(new Error(`waitForState: container ${uuid} does not exist (waiting for ${wanted.join(' or ')})`)));
          return true;
        }
        if (wanted.includes(row.state)) {
          const c = this.store.present(row);
          finish(() => resolve(c));
          return true;
        }
        if (row.state === 'Cancelled') {
          finish(() => reject(new Error(`waitForState: container ${uuid} is Cancelled and can never be ${wanted.join(' or ')}`)));
          return true;
        }
        return false;
      };
      if (opts.signal?.aborted) return reject(opts.signal.reason);
      if (check()) return;
      unsubscribe = this.store.onChange((change) => {
        if (change.object_uuid === uuid) check();
      });
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (timeout > 0) {
        timer = setTimeout(() => {
          const now = this.store.row(uuid)?.state;
          finish(() => reject(new Error(`waitForState: container ${uuid} is still ${now} after ${timeout} ms (waiting for ${wanted.join(' or ')})`)));
        }, timeout);
      }
    });
  }

  // ---- counters, faults, latency ---------------------------------------------

  /** Requests served on `route` (or all routes) since the start or the last {@link resetCounts}. */
  count(route?: RouteName): number {
    if (route) return this.#counts.get(route) ?? 0;
    let n = 0;
    for (const v of this.#counts.values()) n += v;
    return n;
  }

  /** Counters per route. */
  counts(): Partial<Record<RouteName, number>> {
    return Object.fromEntries(this.#counts);
  }

  /** Sets every route's counter back to 0. */
  resetCounts(): void {
    this.#counts.clear();
    this.requests.length = 0;
  }

  /**
   * Sets fault injection: one rule or several, checked in order (see
   * {@link FaultOptions}); `undefined` or `[]` clears it.
   *
   * @example
   * ```ts
   * // 30% of list answers carry a null item; current answers {"uuid": null} etc.
   * fake.setFaults([
   *   { rate: 0.3, kinds: ['null-item', 'malformed-items'], routes: ['containers.list'], seed: 1 },
   *   { rate: 1, kinds: ['bad-identity'] },
   * ]);
   * ```
   */
  setFaults(faults: FaultOptions | readonly FaultOptions[] | undefined): void {
    const rules = faults === undefined ? [] : Array.isArray(faults) ? (faults as readonly FaultOptions[]) : [faults as FaultOptions];
    for (const f of rules) {
      if (!(f.rate >= 0 && f.rate <= 1)) throw new RangeError(`fault rate must be in [0, 1], got ${f.rate}`);
      for (const k of f.kinds ?? []) if (!KNOWN_FAULTS.has(k)) throw new RangeError(`unknown fault kind ${JSON.stringify(k)}`);
    }
    this.#faults = rules.map((opts) => ({ opts: { ...opts }, random: opts.seed !== undefined ? seededRandom(opts.seed) : Math.random }));
  }

  /** Sets the latency added to every request, in ms. */
  setLatency(ms: number): void {
    this.#latency = ms;
  }

  /**
   * Answers requests on `route` with a canned response (like the Go SDK's
   * ServerStub), for `times` requests or until {@link clearOverride}.
   */
  override(route: RouteName, response: OverrideResponse): void {
    this.#overrides.set(route, { ...response });
  }

  /** Removes the override of `route`, or of every route. */
  clearOverride(route?: RouteName): void {
    if (route) this.#overrides.delete(route);
    else this.#overrides.clear();
  }

  // ---- HTTP -----------------------------------------------------------------

  #tokenByUuid(uuid: string): TokenRecord {
    const rec = this.store.tokenByUuid(uuid);
    if (!rec) throw new Error(`FakeArvados has no token ${uuid}`);
    return rec;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const incomingId = req.headers['x-request-id'];
    const requestId =
      typeof incomingId === 'string' && incomingId.length >= 1 && incomingId.length <= 1024
        ? incomingId
        : `req-${randomBytes(10).toString('hex').slice(0, 20)}`;
    const url = new URL(req.url ?? '/', 'http://x');
    const record: RequestRecord = { route: 'unknown', method: req.method ?? 'GET', path: url.pathname, status: 0, requestId };
    let body = '';
    try {
      body = await readBody(req);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        record.status = 413;
        if (this.#opts.recordRequests !== false) this.requests.push(record);
        // Close the connection: the rest of the body is never read.
        res.writeHead(413, { 'Content-Type': 'application/json', Connection: 'close', 'X-Request-Id': requestId });
        res.end(JSON.stringify({ errors: [`request body larger than ${MAX_REQUEST_BODY} bytes`] }), () => req.socket.destroy());
      }
      return;
    }
    if (this.#latency > 0) await new Promise((r) => setTimeout(r, this.#latency));
    if (!this.#server) {
      req.socket.destroy();
      return;
    }

    let params: Record<string, unknown> = {};
    let method = record.method;
    let parseError: ApiError | undefined;
    try {
      params = parseParams(url, body, req.headers['content-type']);
      const override = (typeof params._method === 'string' ? params._method : undefined) ?? req.headers['x-http-method-override'];
      if (method === 'POST' && typeof override === 'string') method = override.toUpperCase();
    } catch (err) {
      parseError = err instanceof ApiError ? err : new ApiError(422, String(err));
    }
    const route = routeOf(method, url.pathname);
    record.route = route.name;
    record.uuid = route.uuid;
    this.#counts.set(route.name, (this.#counts.get(route.name) ?? 0) + 1);
    if (route.name === 'containers.list') record.params = params;
    if (this.#opts.recordRequests !== false) this.requests.push(record);

    const send = (status: number, payload: unknown, headers: Record<string, string> = {}): void => {
      record.status = status;
      const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
      res.writeHead(status, {
        'Content-Type': typeof payload === 'string' && headers['Content-Type'] ? headers['Content-Type'] : 'application/json; charset=utf-8',
        'X-Request-Id': requestId,
        ...headers,
      });
      res.end(text);
    };
    const envelope = (err: ApiError): unknown => {
      if (route.name === 'current') {
        // Served by the Go controller: Rails' text wrapped, no error_token.
        const text = err.status === 401
          ? `//railsapi.internal/arvados/v1/api_client_authorizations/current: 401 Unauthorized: ${err.messages.join('; ')} (${requestId})`
          : `${err.messages.join('; ')} (${requestId})`;
        return { errors: [text] };
      }
      return {
        errors: err.messages.map((m) => `${m} (${requestId})`),
        error_token: `${Math.floor(Date.now() / 1000)}+${randomBytes(4).toString('hex')}`,
      };
    };
    const sendError = (err: ApiError): void => send(err.status, envelope(err));

    const override = this.#overrides.get(route.name);
    if (override) {
      if (override.times !== undefined && --override.times <= 0) this.#overrides.delete(route.name);
      record.fault = 'override';
      const payload = override.body === undefined ? '' : override.body;
      send(override.status, payload, override.headers);
      return;
    }

    const picked = this.#pickFault(route.name);
    const fault = picked?.kind;
    const pick = (n: number): number => Math.floor((picked?.rule.random ?? Math.random)() * n);
    if (fault !== undefined) record.fault = fault;
    if (fault === 500) return sendError(new ApiError(500, '#<PG::ConnectionBad: injected fault>'));
    if (fault === 502 || fault === 503) {
      record.status = fault;
      res.writeHead(fault, { 'Content-Type': 'application/json', 'Retry-After': String(picked?.rule.opts.retryAfter ?? 0), 'X-Request-Id': requestId });
      res.end(JSON.stringify({ errors: [`${fault === 502 ? 'Bad Gateway' : 'Service Unavailable'} (injected fault)`] }));
      return;
    }
    if (fault === 'html') {
      record.status = 502;
      res.writeHead(502, { 'Content-Type': 'text/html' });
      res.end('<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n');
      return;
    }
    if (fault === 'echo-headers') {
      record.status = 502;
      res.writeHead(502, { 'Content-Type': 'text/html' });
      res.end(echoPage(req.method ?? 'GET', req.url ?? '/', req.rawHeaders));
      return;
    }
    if (fault === 'errors-200') return send(200, { errors: [`#<ActiveRecord::StatementInvalid: injected fault> (${requestId})`] });
    if (fault === 'bad-identity') {
      const identity = BAD_IDENTITIES[pick(BAD_IDENTITIES.length)];
      record.faultDetail = JSON.stringify(identity);
      return send(200, identity === null ? 'null' : identity, { 'Content-Type': 'application/json; charset=utf-8' });
    }
    if (fault === 'endless') {
      record.status = 200;
      return endless(res, requestId);
    }

    let status = 200;
    let payload: unknown;
    try {
      if (parseError) throw parseError;
      payload = this.#dispatch(route, params, req, record);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(500, `#<RuntimeError: ${(err as Error).message}>`);
      if (fault === undefined) return sendError(e);
      status = e.status;
      payload = envelope(e);
    }

    if (fault === 'reset') {
      record.status = 0;
      req.socket.destroy();
      return;
    }
    if (fault === 'hang') {
      record.status = 0;
      return; // the socket stays open until the client gives up or stop()
    }
    if ((fault === 'null-item' || fault === 'malformed-items' || fault === 'hostile-uuid') && status === 200) {
      const bad = corruptAnswer(fault, payload, pick);
      record.faultDetail = bad.detail;
      return send(status, JSON.stringify(bad.payload), { 'Content-Type': 'application/json; charset=utf-8' });
    }
    if (fault === 'truncated') {
      const text = JSON.stringify(payload);
      record.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', 'X-Request-Id': requestId });
      res.end(text.slice(0, Math.max(1, Math.floor(text.length / 2))));
      return;
    }
    send(status, payload);
  }

  #pickFault(route: RouteName): { kind: FaultKind; rule: FaultRule } | undefined {
    for (const rule of this.#faults) {
      const f = rule.opts;
      if (f.rate <= 0) continue;
      if (f.routes ? !f.routes.includes(route) : route === 'discovery') continue;
      const kinds = (f.kinds?.length ? f.kinds : ORDINARY_FAULTS).filter((k) => {
        const only = typeof k === 'string' ? ROUTE_LIMITED_FAULTS[k as HostileFaultKind] : undefined;
        return !only || only.includes(route);
      });
      if (kinds.length === 0) continue;
      if (rule.random() >= f.rate) continue;
      return { kind: kinds[Math.floor(rule.random() * kinds.length)], rule };
    }
    return undefined;
  }

  #dispatch(route: { name: RouteName; uuid?: string }, params: Record<string, unknown>, req: http.IncomingMessage, record: RequestRecord): unknown {
    if (route.name === 'discovery') return this.#discovery();
    if (route.name === 'unknown') throw new ApiError(404, 'Path not found');
    const caller = this.store.authenticate(tokenOf(req, params));
    if (!caller) throw new ApiError(401, 'Not logged in');
    record.tokenUuid = caller.uuid;
    const uuid = route.uuid ?? '';
    switch (route.name) {
      case 'current':
        return {
          kind: 'arvados#apiClientAuthorization',
          etag: '',
          uuid: caller.uuid,
          api_token: caller.secret,
          owner_uuid: caller.owner_uuid,
          scopes: ['all'],
          expires_at: null,
          created_at: null,
          created_by_ip_address: null,
          last_used_at: null,
          last_used_by_ip_address: null,
          modified_at: null,
          modified_by_user_uuid: null,
        };
      case 'containers.list':
        return this.store.list(params);
      case 'containers.get':
        return this.store.get(uuid, params.select);
      case 'containers.create': {
        if (!caller.admin) throw new ApiError(403, '#<ArvadosModel::PermissionDeniedError: ArvadosModel::PermissionDeniedError>');
        const attrs = attrsParam(params, 'container');
        for (const k of Object.keys(attrs)) {
          if (!CREATABLE_ATTRS.has(k)) throw new ApiError(422, `#<ActiveModel::UnknownAttributeError: unknown attribute '${k}' for Container.>`);
        }
        if (attrs.state !== undefined && !STATES.includes(attrs.state as ContainerState)) throw new ApiError(422, 'State is not included in the list');
        return this.store.create(attrs as Partial<Container>);
      }
      case 'containers.update':
        return this.store.update(uuid, attrsParam(params, 'container'), caller, params.select);
      case 'containers.lock':
        return this.store.lock(uuid, caller);
      case 'containers.unlock':
        return this.store.unlock(uuid, caller);
      case 'logs.create':
        return this.store.createLog(attrsParam(params, 'log'), caller);
      case 'logs.list':
        return { kind: 'arvados#logList', etag: '', self_link: '', offset: 0, limit: this.store.logs.length, items: this.store.logs, items_available: this.store.logs.length };
    }
  }

  #discovery(): unknown {
    const root = `${this.url}/`;
    const method = (path: string, httpMethod: string) => ({ path, httpMethod });
    return {
      kind: 'discovery#restDescription',
      discoveryVersion: 'v1',
      id: 'arvados:v1',
      name: 'arvados',
      version: 'v1',
      revision: '20250402',
      title: 'Arvados API (FakeArvados)',
      protocol: 'rest',
      rootUrl: root,
      baseUrl: `${root}arvados/v1/`,
      basePath: '/arvados/v1/',
      servicePath: 'arvados/v1/',
      batchPath: 'batch',
      uuidPrefix: this.store.clusterId,
      defaultCollectionReplication: 2,
      blobSignatureTtl: 1209600,
      maxRequestSize: 134217728,
      maxItemsPerResponse: this.store.maxItemsPerResponse,
      ...(this.websocketUrl ? { websocketUrl: this.websocketUrl } : {}),
      schemas: { Container: { id: 'Container', type: 'object', uuidPrefix: 'dz642' } },
      resources: {
        containers: {
          methods: {
            get: method('containers/{uuid}', 'GET'),
            list: method('containers', 'GET'),
            update: method('containers/{uuid}', 'PUT'),
            lock: method('containers/{uuid}/lock', 'POST'),
            unlock: method('containers/{uuid}/unlock', 'POST'),
          },
        },
      },
    };
  }
}

/**
 * A 200 JSON body that never ends: items written as fast as the client reads
 * them (waiting for `drain`, so the fake's memory stays flat) until the
 * client hangs up or the server stops.
 */
function endless(res: http.ServerResponse, requestId: string): void {
  res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'X-Request-Id': requestId });
  res.write('{"kind":"arvados#containerList","offset":0,"limit":1000,"items":[');
  const block = ENDLESS_ITEM.repeat(256);
  const pump = (): void => {
    while (!res.destroyed && !res.writableEnded) {
      if (!res.write(block)) {
        res.once('drain', pump);
        return;
      }
    }
  };
  pump();
}

/**
 * Largest request body read, authenticated or not (the real API server's
 * front end caps bodies too): a larger one is answered 413 without being
 * read, so a client cannot grow the fake's memory at will.
 */
export const MAX_REQUEST_BODY = 8 * 1024 * 1024;

class BodyTooLarge extends Error {}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > MAX_REQUEST_BODY) return reject(new BodyTooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > MAX_REQUEST_BODY) {
        req.off('data', onData);
        chunks.length = 0;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function parseParams(url: URL, body: string, contentType: string | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of url.searchParams) out[k] = v;
  if (body.trim() !== '') {
    if (contentType?.includes('application/json')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(body);
      } catch {
        throw new ApiError(400, 'Invalid JSON in request body');
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ApiError(400, 'Request body must be a JSON object');
      Object.assign(out, parsed);
    } else {
      for (const [k, v] of new URLSearchParams(body)) out[k] = v;
    }
  }
  for (const k of Object.keys(out)) out[k] = decodeValue(k, out[k]);
  return out;
}

/** The resource attributes: `container` / `log` as an object or JSON string, else top-level keys (Rails wrap_parameters). */
function attrsParam(params: Record<string, unknown>, key: string): Record<string, unknown> {
  let attrs = params[key];
  if (attrs === undefined) {
    const { select: _s, _method: _m, api_token: _t, ...rest } = params;
    attrs = rest;
  }
  if (!attrs || typeof attrs !== 'object' || Array.isArray(attrs)) throw new ApiError(422, `"${key}" must be a JSON object`);
  const out = { ...(attrs as Record<string, unknown>) };
  for (const h of HASH_ATTRS) {
    if (typeof out[h] === 'string') {
      try {
        out[h] = JSON.parse(out[h] as string);
      } catch {
        throw new ApiError(422, `Could not parse "${h}" as JSON`);
      }
    }
  }
  return out;
}

function tokenOf(req: http.IncomingMessage, params: Record<string, unknown>): string | undefined {
  const m = /^(?:OAuth2|Bearer) ([!-~]+)$/.exec(req.headers.authorization ?? '');
  if (m) return m[1];
  return typeof params.api_token === 'string' ? params.api_token : undefined;
}

const CONTAINER_PATH = /^\/arvados\/v1\/containers\/([^/]+)(?:\/(lock|unlock))?\/?$/;

function routeOf(method: string, path: string): { name: RouteName; uuid?: string } {
  if (path === '/discovery/v1/apis/arvados/v1/rest') return { name: method === 'GET' || method === 'POST' ? 'discovery' : 'unknown' };
  if (path === '/arvados/v1/api_client_authorizations/current' && method === 'GET') return { name: 'current' };
  if (path === '/arvados/v1/containers' || path === '/arvados/v1/containers/') {
    if (method === 'GET') return { name: 'containers.list' };
    if (method === 'POST') return { name: 'containers.create' };
    return { name: 'unknown' };
  }
  if (path === '/arvados/v1/logs' || path === '/arvados/v1/logs/') {
    if (method === 'POST') return { name: 'logs.create' };
    if (method === 'GET') return { name: 'logs.list' };
    return { name: 'unknown' };
  }
  const m = CONTAINER_PATH.exec(path);
  if (m) {
    const uuid = decodeURIComponent(m[1]);
    if (m[2] && method === 'POST') return { name: m[2] === 'lock' ? 'containers.lock' : 'containers.unlock', uuid };
    if (!m[2] && method === 'GET') return { name: 'containers.get', uuid };
    if (!m[2] && (method === 'PUT' || method === 'PATCH')) return { name: 'containers.update', uuid };
  }
  return { name: 'unknown' };
}

/**
 * A client of the fake's own HTTPS server: it verifies the self-signed
 * certificate itself, and tells the child processes it equips to skip
 * verification, which is all a child can be told through
 * `ARVADOS_API_HOST_INSECURE` (without it, a crunch-run it starts fails on
 * "self-signed certificate" and its container cycles through lock and unlock).
 */
class FakeServerClient extends ArvadosClient {
  override credentialsEnv(): ReturnType<ArvadosClient['credentialsEnv']> {
    return { ...super.credentialsEnv(), ARVADOS_API_HOST_INSECURE: '1' };
  }
}
