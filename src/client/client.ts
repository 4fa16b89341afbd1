/**
 * `ArvadosClient`: the few API calls a dispatcher makes, sent the way the Go
 * and Python SDKs send them (see `caller.ts`).
 *
 * It is the one place where API answers enter the program, so it is where
 * they are checked: every record it returns has the documented shape (see
 * `schemas.ts`), malformed list items are left out and counted, and anything
 * else that breaks the protocol is an {@link ArvadosProtocolError}. Every
 * request is bounded in time and in body size, and no error text it produces
 * holds the token or any piece of it.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import { isContainerUuid } from '../uuid.js';
import { addLogSecrets, logger } from '../log.js';
import { checkDuration } from '../util/duration.js';
import { describeError } from '../util/errors.js';
import { Redactor } from '../util/redact.js';
import { realClock } from '../util/sleep.js';
import type {
  ApiClientAuthorization,
  Container,
  ContainerList,
  ContainerUpdate,
  DiscoveryDocument,
  ListParams,
  LockResult,
  LogRecord,
  SelectedContainer,
} from '../types.js';
import { ApiCaller } from './caller.js';
import { settingsFromEnv } from './config.js';
import { listRequest, walkContainerPages, type ListAnswer } from './container-pages.js';
import { DroppedItemWarnings } from './dropped-items.js';
import { ArvadosConfigError } from './errors.js';
import { checkAuthorization, checkDiscovery, checkLockResult, checkLogRecord, checkContainer, type Check } from './schemas.js';
import { DEFAULT_MAX_RESPONSE_BYTES, type ArvadosClientEvents, type ArvadosClientOptions, type CallOptions } from './options.js';

// The options and event types are part of the client's API: importers of this module get them too.
export * from './options.js';

const log = logger('client');

function parseUrl(apiHost: string): string {
  const host = apiHost.trim();
  if (!host) throw new ArvadosConfigError('apiHost is empty');
  const withScheme = /^https?:\/\//i.test(host) ? host : `https://${host}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new ArvadosConfigError(`ARVADOS_API_HOST is not a valid host[:port]: ${JSON.stringify(apiHost)}`);
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.username) {
    throw new ArvadosConfigError(`ARVADOS_API_HOST must be host[:port], not a URL with a path: ${JSON.stringify(apiHost)}`);
  }
  return `${url.protocol}//${url.host}`;
}

/**
 * Everything of the token worth masking: the token, its secret part, and
 * every 8-character piece of the secret, so that not even a fragment of it
 * survives in an error (e.g. split by markup in a proxy's page).
 */
function tokenSecrets(token: string): string[] {
  const secret = /^v2\/[^/]+\/(.+)$/.exec(token)?.[1] ?? token;
  const out = [token, secret];
  for (let i = 0; i + 8 <= secret.length; i++) out.push(secret.slice(i, i + 8));
  return out;
}

/**
 * A client for the parts of the Arvados API that dispatchers use.
 *
 * @example
 * ```ts
 * const client = ArvadosClient.fromEnv();
 * client.on('request', (e) => metrics.observe(e.path, e.durationMs));
 * const me = await client.currentAuthorization();
 * const page = await client.listContainers({ filters: [['state', '=', 'Queued']], limit: 10 });
 * if (page.dropped > 0) console.warn(`${page.dropped} malformed items left out`);
 * ```
 */
export class ArvadosClient extends EventEmitter<ArvadosClientEvents> {
  /** `https://host:port` the client talks to. */
  readonly baseUrl: string;
  /** `host:port` as configured (without scheme when https). */
  readonly apiHost: string;
  /** Whether TLS verification is off. */
  readonly insecure: boolean;
  /**
   * The extra CA certificates (PEM) this client trusts, from its `ca` option;
   * the Dispatcher's event stream trusts them too.
   */
  readonly ca: string | readonly string[] | undefined;
  // Private so that neither util.inspect nor JSON.stringify of a client shows it.
  readonly #token: string;
  readonly #redactor: Redactor;
  readonly #httpAgent: http.Agent;
  readonly #httpsAgent: https.Agent;
  readonly #caller: ApiCaller;
  readonly #dropped: DroppedItemWarnings;
  #discovery: Promise<DiscoveryDocument> | undefined;

  constructor(opts: ArvadosClientOptions) {
    super();
    if (!opts || typeof opts.apiToken !== 'string' || opts.apiToken.trim() === '') {
      throw new ArvadosConfigError('apiToken is missing');
    }
    if (/\s/.test(opts.apiToken.trim())) throw new ArvadosConfigError('apiToken contains whitespace');
    this.baseUrl = parseUrl(opts.apiHost ?? '');
    this.apiHost = this.baseUrl.replace(/^https:\/\//, '');
    this.insecure = opts.insecure ?? false;
    this.ca = opts.ca;
    this.#token = opts.apiToken.trim();
    const secrets = tokenSecrets(this.#token);
    this.#redactor = new Redactor(secrets);
    addLogSecrets(...secrets);
    const timeout = checkDuration('timeout', opts.timeout ?? 30_000);
    const deadline = checkDuration('deadline', opts.deadline ?? 120_000);
    const policy = {
      retries: Math.max(0, opts.retries ?? 4),
      baseDelay: checkDuration('retryDelay', opts.retryDelay ?? 500),
      maxDelay: checkDuration('maxRetryDelay', opts.maxRetryDelay ?? 10_000),
      maxRetryAfter: checkDuration('maxRetryAfter', opts.maxRetryAfter ?? 60_000),
    };
    const clock = opts.clock ?? realClock;
    // Keep-alive: a dispatcher sends thousands of small requests to one host;
    // a new TLS handshake for each would cost more than the request. LIFO
    // reuses the warmest socket and lets idle ones time out.
    const agentOptions = { keepAlive: true, keepAliveMsecs: 15_000, scheduling: 'lifo' as const, timeout: 60_000 };
    this.#httpAgent = opts.agent ?? new http.Agent(agentOptions);
    this.#httpsAgent = (opts.agent as https.Agent | undefined) ?? new https.Agent({
      ...agentOptions,
      rejectUnauthorized: !this.insecure,
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    this.#caller = new ApiCaller({
      baseUrl: this.baseUrl,
      authorization: `Bearer ${this.#token}`,
      redactor: this.#redactor,
      policy,
      timeout,
      deadline,
      maxBytes: opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
      maxQueryLength: opts.maxQueryLength ?? 1000,
      httpAgent: this.#httpAgent,
      httpsAgent: this.#httpsAgent,
      clock,
      random: opts.random ?? Math.random,
      events: {
        listening: () => this.listenerCount('request') > 0,
        report: (event) => this.#emitSafely('request', event),
      },
    });
    this.#dropped = new DroppedItemWarnings(clock);
  }

  /**
   * A client configured from `ARVADOS_API_HOST`, `ARVADOS_API_TOKEN` and
   * `ARVADOS_API_HOST_INSECURE`, falling back to
   * `$HOME/.config/arvados/settings.conf` (the environment wins).
   *
   * @throws {@link ArvadosConfigError} naming the missing variable.
   */
  static fromEnv(
    env: NodeJS.ProcessEnv = process.env,
    opts: Omit<ArvadosClientOptions, 'apiHost' | 'apiToken' | 'insecure'> = {},
  ): ArvadosClient {
    const s = settingsFromEnv(env);
    return new ArvadosClient({ ...opts, apiHost: s.apiHost, apiToken: s.apiToken, insecure: s.insecure });
  }

  /**
   * The variables a child process (crunch-run, an sbatch job) needs to reach
   * the API as this client does. Pass them through the environment, never argv.
   */
  credentialsEnv(): { ARVADOS_API_HOST: string; ARVADOS_API_TOKEN: string; ARVADOS_API_HOST_INSECURE: string } {
    return {
      ARVADOS_API_HOST: this.baseUrl.startsWith('http://') ? this.baseUrl : this.apiHost,
      ARVADOS_API_TOKEN: this.#token,
      ARVADOS_API_HOST_INSECURE: this.insecure ? '1' : '0',
    };
  }

  /**
   * Masks this client's token (whole, its secret part, any 8-character piece
   * of it) and every token- or Authorization-shaped value in `text`. For
   * callers that put API-derived text anywhere people can read it.
   */
  redact(text: string): string {
    return this.#redactor.redact(text);
  }

  /** Closes idle keep-alive connections. The client stays usable. */
  close(): void {
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  /**
   * `GET /arvados/v1/api_client_authorizations/current`: who this token is.
   * An answer without a valid `uuid` is an {@link ArvadosProtocolError}.
   */
  currentAuthorization(opts?: CallOptions): Promise<ApiClientAuthorization> {
    return this.#caller.call({ method: 'GET', path: 'api_client_authorizations/current', pattern: 'api_client_authorizations/current', accept: checkAuthorization }, opts);
  }

  /**
   * The discovery document (`/discovery/v1/apis/arvados/v1/rest`), checked
   * (a non-empty `basePath`; `websocketUrl` a ws/wss/http(s) URL when present)
   * and cached for the life of the client; a failed fetch is not cached.
   */
  discovery(opts?: CallOptions): Promise<DiscoveryDocument> {
    if (!this.#discovery) {
      const p = this.#caller.call<DiscoveryDocument>(
        { method: 'GET', path: '/discovery/v1/apis/arvados/v1/rest', pattern: 'discovery', accept: checkDiscovery, anonymous: true },
        opts,
      );
      this.#discovery = p;
      p.catch(() => {
        if (this.#discovery === p) this.#discovery = undefined;
      });
    }
    return this.#discovery;
  }

  /**
   * One page of `GET /arvados/v1/containers`. Items that are not valid
   * containers (or, with `select`, lack a valid selected field) are left out,
   * counted in `dropped` and warned about (`'warning'` event and debug log,
   * rate-limited, naming the uuid when the item has a valid one). An answer
   * that is not a list envelope at all is an {@link ArvadosProtocolError}.
   *
   * With `params.select`, items carry only the selected fields plus `uuid`,
   * and are typed so.
   */
  async listContainers<K extends keyof Container = keyof Container>(
    params: ListParams<K> = {},
    opts?: CallOptions,
  ): Promise<ContainerList<SelectedContainer<K>>> {
    return (await this.#list(params, opts)).page;
  }

  async #list<K extends keyof Container>(params: ListParams<K>, opts?: CallOptions): Promise<ListAnswer<K>> {
    return this.#caller.call(listRequest(params, (item, uuid, reason) => this.#warnDropped(item, uuid, reason)), opts);
  }

  /**
   * Walks every page of a container query, yielding each page (with its
   * `dropped` count: a walk with any dropped item is incomplete, so nothing
   * may be concluded from a container's absence).
   *
   * Pages are taken in UUID order with a `uuid > last` cursor (keyset paging)
   * instead of offsets, so records that leave the result set while it is being
   * walked (e.g. because they were just locked) cannot make later records
   * shift past an offset and be skipped. `params.order` and `params.offset`
   * are therefore ignored. The walk ends on an empty page or one shorter than
   * the limit the server applied. `select` works as in {@link listContainers}.
   * A page with more items than `limit` is a bad answer (a protocol error);
   * past `params.maxItems` items (default {@link DEFAULT_MAX_WALK_ITEMS}) the
   * walk stops with an {@link ArvadosProtocolError}: the caller has read a
   * bounded part and must treat the walk as incomplete.
   */
  pageContainers<K extends keyof Container = keyof Container>(
    params: Omit<ListParams<K>, 'order' | 'offset' | 'count'> & { maxItems?: number } = {},
    opts?: CallOptions,
  ): AsyncGenerator<ContainerList<SelectedContainer<K>>, void, undefined> {
    return walkContainerPages<K>((p) => this.#list(p, opts), params);
  }

  /** Every container matching `params`, walking all pages (see {@link pageContainers}). */
  async listAllContainers(params: Omit<ListParams, 'order' | 'offset' | 'count'> = {}, opts?: CallOptions): Promise<Container[]> {
    const all: Container[] = [];
    for await (const page of this.pageContainers(params, opts)) all.push(...page.items);
    return all;
  }

  /** `GET /arvados/v1/containers/{uuid}`; the answer must be that container's full, valid record. */
  async getContainer(uuid: string, opts?: CallOptions): Promise<Container> {
    return this.#caller.call({ method: 'GET', path: this.#containerPath(uuid), pattern: 'containers/{uuid}', accept: this.#same(uuid, checkContainer) }, opts);
  }

  /**
   * `PUT /arvados/v1/containers/{uuid}` with `{"container": attrs}`; answers
   * the updated record (checked like {@link getContainer}). A 200 that
   * carries `errors` is an {@link ArvadosProtocolError}, not a success.
   */
  async updateContainer(uuid: string, attrs: ContainerUpdate, opts?: CallOptions): Promise<Container> {
    return this.#caller.call(
      { method: 'PUT', path: this.#containerPath(uuid), pattern: 'containers/{uuid}', body: { container: attrs }, accept: this.#same(uuid, checkContainer) },
      opts,
    );
  }

  /**
   * `POST /arvados/v1/containers/{uuid}/lock`. Only one of several concurrent
   * lockers can win; the others get HTTP 422. A malformed answer is an
   * {@link ArvadosProtocolError} that is not retried: the lock may have been
   * taken, and the next poll shows it.
   */
  async lockContainer(uuid: string, opts?: CallOptions): Promise<LockResult> {
    return this.#caller.call(
      { method: 'POST', path: `${this.#containerPath(uuid)}/lock`, pattern: 'containers/{uuid}/lock', accept: this.#same(uuid, checkLockResult) },
      opts,
    );
  }

  /** `POST /arvados/v1/containers/{uuid}/unlock`; only the locking token may unlock. */
  async unlockContainer(uuid: string, opts?: CallOptions): Promise<LockResult> {
    return this.#caller.call(
      { method: 'POST', path: `${this.#containerPath(uuid)}/unlock`, pattern: 'containers/{uuid}/unlock', accept: this.#same(uuid, checkLockResult) },
      opts,
    );
  }

  /** `POST /arvados/v1/logs`, e.g. a `dispatch` event about a container. */
  createLog(
    rec: { object_uuid: string; event_type: string; properties: Readonly<Record<string, unknown>> },
    opts?: CallOptions,
  ): Promise<LogRecord> {
    return this.#caller.call({ method: 'POST', path: 'logs', pattern: 'logs', body: { log: rec }, accept: checkLogRecord }, opts);
  }

  #containerPath(uuid: string): string {
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    return `containers/${uuid}`;
  }

  /** `check`, plus: the record is the one that was asked for. */
  #same<T extends { uuid: string }>(uuid: string, check: Check<T>): Check<T> {
    return (parsed) => {
      const r = check(parsed);
      if (r.ok && r.value.uuid !== uuid) return { ok: false, reason: 'answer is about another container' };
      return r;
    };
  }

  #warnDropped(item: unknown, uuid: string | undefined, reason: string): void {
    const warning = this.#dropped.warning(item, uuid, reason);
    if (!warning) return;
    log('%s', warning.message);
    this.#emitSafely('warning', warning);
  }

  #emitSafely<E extends keyof ArvadosClientEvents>(event: E, ...args: ArvadosClientEvents[E]): void {
    try {
      (this.emit as (e: E, ...a: ArvadosClientEvents[E]) => boolean)(event, ...args);
    } catch (err) {
      log('%s listener failed: %s', event, describeError(err));
    }
  }
}
