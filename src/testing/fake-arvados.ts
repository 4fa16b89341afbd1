/**
 * FakeArvados: an in-process Arvados API server on 127.0.0.1 for testing
 * dispatchers, over HTTPS with a fresh self-signed certificate (or plain
 * HTTP). It answers the calls a dispatcher makes with the API server's rules
 * and error bodies (see `api-handler.ts` and `store.ts`), and adds what
 * tests need: an admin side door, request counters, fault injection and
 * added latency.
 *
 * @module
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { ArvadosClient, type ArvadosClientOptions } from '../client/client.js';
import type { Container, ContainerState, LogRecord } from '../types.js';
import { ApiHandler } from './api-handler.js';
import { discoveryDocument } from './discovery.js';
import { ApiError } from './errors.js';
import { FakeServerClient } from './fake-server-client.js';
import { faultRules, type FaultOptions } from './faults.js';
import type { OverrideResponse } from './overrides.js';
import type { RequestRecord } from './request-log.js';
import type { RouteName } from './routes.js';
import { Store, type Transition } from './store.js';
import { selfSignedCert } from './tls.js';
import type { TokenRecord } from './tokens.js';
import { waitForState, type WaitForStateOptions } from './wait-for-state.js';
import { FakeEventStream } from './websocket.js';

// The types of the server's settings and records, importable from here as from the package's `testing` entry.
export { ORDINARY_FAULTS, type FaultKind, type FaultOptions, type OrdinaryFaultKind } from './faults.js';
export type { OverrideResponse } from './overrides.js';
export type { RequestRecord } from './request-log.js';
export { MAX_REQUEST_BODY } from './request-parsing.js';
export type { RouteName } from './routes.js';
export type { WaitForStateOptions } from './wait-for-state.js';

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

/** A token for tests: its secret and its UUID. */
export interface FakeToken {
  token: string;
  uuid: string;
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
  readonly #handler: ApiHandler;
  readonly #events?: FakeEventStream;
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
    this.#handler = new ApiHandler(
      {
        store: this.store,
        serving: () => this.#server !== undefined,
        discovery: () =>
          discoveryDocument({ url: this.url, clusterId: this.store.clusterId, maxItemsPerResponse: this.store.maxItemsPerResponse, websocketUrl: this.websocketUrl }),
      },
      { recordRequests: opts.recordRequests !== false, requests: this.requests, latency: opts.latency ?? 0 },
    );
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
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => void this.#handler.handle(req, res);
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
    return waitForState(this.store, uuid, state, opts);
  }

  // ---- counters, faults, latency ---------------------------------------------

  /** Requests served on `route` (or all routes) since the start or the last {@link resetCounts}. */
  count(route?: RouteName): number {
    return this.#handler.log.count(route);
  }

  /** Counters per route. */
  counts(): Partial<Record<RouteName, number>> {
    return this.#handler.log.counts();
  }

  /** Sets every route's counter back to 0. */
  resetCounts(): void {
    this.#handler.log.reset();
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
    this.#handler.faults = faultRules(faults);
  }

  /** Sets the latency added to every request, in ms. */
  setLatency(ms: number): void {
    this.#handler.latency = ms;
  }

  /**
   * Answers requests on `route` with a canned response (like the Go SDK's
   * ServerStub), for `times` requests or until {@link clearOverride}.
   */
  override(route: RouteName, response: OverrideResponse): void {
    this.#handler.overrides.set(route, response);
  }

  /** Removes the override of `route`, or of every route. */
  clearOverride(route?: RouteName): void {
    this.#handler.overrides.clear(route);
  }

  #tokenByUuid(uuid: string): TokenRecord {
    const rec = this.store.tokenByUuid(uuid);
    if (!rec) throw new Error(`FakeArvados has no token ${uuid}`);
    return rec;
  }
}
