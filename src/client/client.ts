/**
 * `ArvadosClient`: the few API calls a dispatcher makes, sent the way the Go
 * and Python SDKs send them (Bearer token, a request id kept across retries,
 * JSON-encoded list parameters, long queries as POST with `_method=GET`).
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
import { Redactor, redactAndCut } from '../util/redact.js';
import { realClock, type Clock } from '../util/sleep.js';
import type {
  ApiClientAuthorization,
  Container,
  ContainerList,
  ContainerUpdate,
  DiscoveryDocument,
  Filter,
  ListParams,
  LockResult,
  LogRecord,
  SelectedContainer,
} from '../types.js';
import { settingsFromEnv } from './config.js';
import { ArvadosApiError, ArvadosConfigError, ArvadosProtocolError, type ArvadosApiErrorDetails } from './errors.js';
import { isRetryableStatus, parseRetryAfter, withRetries, type RetryDecision, type RetryPolicy } from './retry.js';
import {
  checkAuthorization,
  checkDiscovery,
  checkListEnvelope,
  checkLockResult,
  checkLogRecord,
  containerCheck,
  checkContainer,
  type Check,
} from './schemas.js';
import {
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_MAX_WALK_ITEMS,
  type ArvadosClientEvents,
  type ArvadosClientOptions,
  type CallOptions,
  type ClientWarning,
  type RequestEvent,
} from './options.js';
import { exchange, TransportError, type WireRequest, type WireResponse } from './transport.js';

// The options and event types are part of the client's API: importers of this module get them too.
export * from './options.js';

const log = logger('client');

// How an attempt's error tells the retry loop what it means, without making
// the decision a field of the error (it would show in inspect and JSON).
const decisions = new WeakMap<object, RetryDecision>();
function decided(err: ArvadosApiError, decision: RetryDecision): ArvadosApiError {
  decisions.set(err, decision);
  return err;
}

/** Bytes of a non-2xx body that are read at all; the rest is dropped unread. */
const MAX_ERROR_BYTES = 64 * 1024;
/** Characters of a body that is not Arvados JSON that may appear in an error. */
const EXCERPT_CHARS = 120;
/** Characters of one of the server's `errors[]` that may appear in an error. */
const MESSAGE_CHARS = 500;
/** How many of the server's `errors[]` are kept. */
const MAX_MESSAGES = 5;
/** How often the same malformed list item is warned about, at most. */
const WARN_INTERVAL = 10 * 60_000;
/** How many distinct malformed items are remembered for rate-limiting warnings. */
const WARN_MEMORY = 1000;

type Params = Record<string, unknown>;

interface Request<T> {
  method: 'GET' | 'POST' | 'PUT';
  /** Under `/arvados/v1/`, or absolute (`/discovery/…`). */
  path: string;
  /** The path as a pattern, for messages and metrics, e.g. `containers/{uuid}`. */
  pattern: string;
  query?: Params;
  body?: Params;
  /** Turns the parsed 2xx answer into the result, or returns a reason it is malformed. */
  accept(parsed: unknown): { ok: true; value: T } | { ok: false; reason: string };
  /** Leave the token out (the discovery document needs none). */
  anonymous?: boolean;
  /** A lower bound on the answer's size than the client's `maxResponseBytes`. */
  maxBytes?: number;
}

/**
 * Container fields whose size does not depend on what a user put in the
 * container (no command, mounts, environment, runtime_status...): a page of
 * only these fields is small, and its size is bounded by its `limit`.
 */
const SMALL_FIELDS = new Set<string>([
  'uuid', 'kind', 'etag', 'state', 'priority', 'locked_by_uuid', 'auth_uuid', 'lock_count', 'modified_at', 'created_at',
  'started_at', 'finished_at', 'exit_code', 'owner_uuid', 'runtime_constraints', 'progress', 'cost', 'subrequests_cost',
]);
/** Bytes allowed per item of a page of {@link SMALL_FIELDS}, and for the envelope. */
const SMALL_ITEM_BYTES = 16 * 1024;
const ENVELOPE_BYTES = 64 * 1024;

/**
 * `req-` + 20 base-36 characters, like the Python SDK. Request ids only need
 * to be unique enough to find a request in server logs, not unguessable, so
 * Math.random is enough (and cheaper than crypto on every call).
 */
function newRequestId(): string {
  let id = 'req-';
  while (id.length < 24) id += Math.random().toString(36).slice(2, 12);
  return id.slice(0, 24);
}

/**
 * List parameters as the SDKs send them: strings as-is, everything else JSON;
 * `undefined`, `null` and `false` are left out as the Go SDK does.
 */
export function encodeParams(params: Params): URLSearchParams {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === false) continue;
    out.set(k, typeof v === 'string' ? v : JSON.stringify(v));
  }
  return out;
}

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

/** The JSON type of a value, for messages that must not quote the value. */
function kindOf(x: unknown): string {
  return x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x;
}

const NOT_JSON = Symbol('not JSON');

/** The parsed body, or {@link NOT_JSON}. */
function parseJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return NOT_JSON;
  }
}

/** What every attempt of one call shares. */
interface CallState<T> {
  req: Request<T>;
  wire: WireRequest;
  requestId: string;
  /** `METHOD pattern`, for messages. */
  label: string;
  /** On the client's clock. */
  deadline: number;
  signal?: AbortSignal;
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
  readonly #authorization: string;
  readonly #redactor: Redactor;
  readonly #policy: RetryPolicy;
  readonly #timeout: number;
  readonly #deadline: number;
  readonly #maxBytes: number;
  readonly #maxQueryLength: number;
  readonly #httpAgent: http.Agent;
  readonly #httpsAgent: https.Agent;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #warned = new Map<string, number>();
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
    this.#authorization = `Bearer ${this.#token}`;
    const secrets = tokenSecrets(this.#token);
    this.#redactor = new Redactor(secrets);
    addLogSecrets(...secrets);
    this.#timeout = checkDuration('timeout', opts.timeout ?? 30_000);
    this.#deadline = checkDuration('deadline', opts.deadline ?? 120_000);
    this.#maxBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.#maxQueryLength = opts.maxQueryLength ?? 1000;
    this.#policy = {
      retries: Math.max(0, opts.retries ?? 4),
      baseDelay: checkDuration('retryDelay', opts.retryDelay ?? 500),
      maxDelay: checkDuration('maxRetryDelay', opts.maxRetryDelay ?? 10_000),
      maxRetryAfter: checkDuration('maxRetryAfter', opts.maxRetryAfter ?? 60_000),
    };
    this.#clock = opts.clock ?? realClock;
    this.#random = opts.random ?? Math.random;
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
    return this.#call({ method: 'GET', path: 'api_client_authorizations/current', pattern: 'api_client_authorizations/current', accept: checkAuthorization }, opts);
  }

  /**
   * The discovery document (`/discovery/v1/apis/arvados/v1/rest`), checked
   * (a non-empty `basePath`; `websocketUrl` a ws/wss/http(s) URL when present)
   * and cached for the life of the client; a failed fetch is not cached.
   */
  discovery(opts?: CallOptions): Promise<DiscoveryDocument> {
    if (!this.#discovery) {
      const p = this.#call<DiscoveryDocument>(
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

  async #list<K extends keyof Container>(
    params: ListParams<K>,
    opts?: CallOptions,
  ): Promise<{ page: ContainerList<SelectedContainer<K>>; raw: number; cursor?: string }> {
    const select = params.select ? [...new Set<string>([...params.select, 'uuid'])] : undefined;
    const check = containerCheck(select);
    return this.#call(
      {
        method: 'GET',
        path: 'containers',
        pattern: 'containers',
        query: { ...params, ...(select ? { select } : {}) },
        // A page of small fields is bounded by its limit: a huge one is a bad
        // answer, refused while it arrives rather than after it is parsed.
        ...(select && params.limit !== undefined && select.every((f) => SMALL_FIELDS.has(f))
          ? { maxBytes: ENVELOPE_BYTES + params.limit * SMALL_ITEM_BYTES }
          : {}),
        accept: (parsed) => {
          const env = checkListEnvelope(parsed);
          if (!env.ok) return env;
          const raw = env.value.items;
          // More items than asked for is a bad answer, not a bigger page to keep.
          if (params.limit !== undefined && raw.length > params.limit) return { ok: false, reason: `${raw.length} items for limit ${params.limit}` };
          const items: SelectedContainer<K>[] = [];
          let cursor: string | undefined;
          for (const item of raw) {
            const uuid = (item as { uuid?: unknown } | null)?.uuid;
            if (isContainerUuid(uuid)) cursor = uuid;
            const r = check(item);
            if (r.ok) items.push(r.value);
            else this.#warnDropped(item, isContainerUuid(uuid) ? uuid : undefined, r.reason);
          }
          const { offset = 0, limit = raw.length } = env.value;
          const page: ContainerList<SelectedContainer<K>> = {
            ...env.value,
            offset,
            limit,
            items,
            dropped: raw.length - items.length,
          };
          return { ok: true, value: { page, raw: raw.length, cursor } };
        },
      },
      opts,
    );
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
  async *pageContainers<K extends keyof Container = keyof Container>(
    params: Omit<ListParams<K>, 'order' | 'offset' | 'count'> & { maxItems?: number } = {},
    opts?: CallOptions,
  ): AsyncGenerator<ContainerList<SelectedContainer<K>>, void, undefined> {
    const { maxItems = DEFAULT_MAX_WALK_ITEMS, ...rest } = params;
    params = rest;
    const filters: readonly Filter[] = params.filters ?? [];
    const limit = params.limit ?? 1000;
    let last: string | undefined;
    let seen = 0;
    for (;;) {
      // Pages that never end (valid, ever-increasing UUIDs) must not grow memory for ever.
      if (seen >= maxItems) {
        throw new ArvadosProtocolError({
          status: 200,
          errors: [`the query returned more than ${maxItems} items; stopped reading`],
          retryable: false,
          request: 'GET containers',
          attempts: 1,
        });
      }
      const { page, raw, cursor } = await this.#list<K>(
        {
          ...params,
          filters: last === undefined ? filters : [...filters, ['uuid', '>', last]],
          order: ['uuid asc'],
          count: 'none',
          limit,
        },
        opts,
      );
      if (raw === 0) return;
      seen += raw;
      yield page;
      const applied = page.limit > 0 ? page.limit : limit;
      // Without any identifiable item there is no cursor to go on from; the
      // page's dropped count already tells the caller the walk is incomplete.
      if (raw < applied || cursor === undefined) return;
      // A server that does not honour the cursor would loop forever; stop instead.
      if (last !== undefined && cursor <= last) {
        throw new ArvadosProtocolError({
          status: 200,
          errors: ['server ignored the uuid paging cursor'],
          retryable: false,
          request: 'GET containers',
          attempts: 1,
        });
      }
      last = cursor;
    }
  }

  /** Every container matching `params`, walking all pages (see {@link pageContainers}). */
  async listAllContainers(params: Omit<ListParams, 'order' | 'offset' | 'count'> = {}, opts?: CallOptions): Promise<Container[]> {
    const all: Container[] = [];
    for await (const page of this.pageContainers(params, opts)) all.push(...page.items);
    return all;
  }

  /** `GET /arvados/v1/containers/{uuid}`; the answer must be that container's full, valid record. */
  async getContainer(uuid: string, opts?: CallOptions): Promise<Container> {
    return this.#call({ method: 'GET', path: this.#containerPath(uuid), pattern: 'containers/{uuid}', accept: this.#same(uuid, checkContainer) }, opts);
  }

  /**
   * `PUT /arvados/v1/containers/{uuid}` with `{"container": attrs}`; answers
   * the updated record (checked like {@link getContainer}). A 200 that
   * carries `errors` is an {@link ArvadosProtocolError}, not a success.
   */
  async updateContainer(uuid: string, attrs: ContainerUpdate, opts?: CallOptions): Promise<Container> {
    return this.#call(
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
    return this.#call(
      { method: 'POST', path: `${this.#containerPath(uuid)}/lock`, pattern: 'containers/{uuid}/lock', accept: this.#same(uuid, checkLockResult) },
      opts,
    );
  }

  /** `POST /arvados/v1/containers/{uuid}/unlock`; only the locking token may unlock. */
  async unlockContainer(uuid: string, opts?: CallOptions): Promise<LockResult> {
    return this.#call(
      { method: 'POST', path: `${this.#containerPath(uuid)}/unlock`, pattern: 'containers/{uuid}/unlock', accept: this.#same(uuid, checkLockResult) },
      opts,
    );
  }

  /** `POST /arvados/v1/logs`, e.g. a `dispatch` event about a container. */
  createLog(
    rec: { object_uuid: string; event_type: string; properties: Readonly<Record<string, unknown>> },
    opts?: CallOptions,
  ): Promise<LogRecord> {
    return this.#call({ method: 'POST', path: 'logs', pattern: 'logs', body: { log: rec }, accept: checkLogRecord }, opts);
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
    const key = uuid ?? `(${kindOf(item)})`;
    const now = this.#clock.now();
    const last = this.#warned.get(key);
    if (last !== undefined && now - last < WARN_INTERVAL) return;
    this.#warned.delete(key);
    if (this.#warned.size >= WARN_MEMORY) this.#warned.delete(this.#warned.keys().next().value!);
    this.#warned.set(key, now);
    const what = uuid ? `container ${uuid}` : `an item (${kindOf(item)}) without a valid container uuid`;
    const warning: ClientWarning = { message: `GET containers: left out ${what}: not a valid container record (${reason})` };
    if (uuid) warning.uuid = uuid;
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

  /** The server's `errors[]` when `parsed` is an Arvados error body; redacted, then cut. */
  #errorsOf(parsed: unknown): string[] | undefined {
    const errors = (parsed as { errors?: unknown } | null)?.errors;
    if (!Array.isArray(errors)) return undefined;
    return errors
      .slice(0, MAX_MESSAGES)
      .map((e) => redactAndCut(typeof e === 'string' ? e : (JSON.stringify(e) ?? String(e)), MESSAGE_CHARS, this.#redactor));
  }

  /** A short, single-line excerpt of a body that is not the JSON we expected: redacted whole, then cut. */
  #excerpt(body: string): string {
    const clean = this.#redactor.redact(body);
    const text = clean.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
    // Removing markup could join what it separated; mask again before cutting.
    return redactAndCut(text, EXCERPT_CHARS, this.#redactor);
  }

  /**
   * One API call: the request is encoded once, then {@link withRetries} runs
   * {@link #attempt} until it succeeds or may not be tried again.
   */
  #call<T>(req: Request<T>, opts: CallOptions = {}): Promise<T> {
    const requestId = newRequestId();
    const url = new URL(req.path.startsWith('/') ? req.path : `/arvados/v1/${req.path}`, this.baseUrl);
    const headers: Record<string, string> = { 'X-Request-Id': requestId, Accept: 'application/json' };
    if (!req.anonymous) headers.Authorization = this.#authorization;
    const wire: WireRequest = { method: req.method, url, headers };
    if (req.query) {
      const qs = encodeParams(req.query).toString();
      if (qs.length > this.#maxQueryLength) {
        // Rails honours _method=GET in a form body; the URL stays short.
        wire.method = 'POST';
        wire.data = `_method=GET&${qs}`;
        headers['Content-Type'] = 'application/x-www-form-urlencoded';
        headers['X-Http-Method-Override'] = 'GET';
      } else if (qs) {
        url.search = qs;
      }
    } else if (req.body) {
      wire.data = JSON.stringify(req.body);
      headers['Content-Type'] = 'application/json';
    }
    const call: CallState<T> = {
      req,
      wire,
      requestId,
      label: `${req.method} ${req.pattern}`,
      deadline: this.#clock.now() + (opts.deadline ?? this.#deadline),
      signal: opts.signal,
    };
    return withRetries((n) => this.#attempt(call, n), {
      policy: opts.retries === undefined ? this.#policy : { ...this.#policy, retries: Math.max(0, opts.retries) },
      decide: (err) => (err instanceof Object && decisions.get(err)) || { retry: false },
      onRetry: (err, attempts, delay) =>
        log('%s (%s): %s; retry %d in %d ms', call.label, requestId, describeError(err), attempts, Math.round(delay)),
      signal: opts.signal,
      deadline: call.deadline,
      clock: this.#clock,
      random: this.#random,
    });
  }

  /**
   * Attempt number `n` (0 for the first) of a call: one exchange, its answer
   * interpreted, one `'request'` event. Throws an {@link ArvadosApiError}
   * carrying its retry decision, or the caller's abort reason.
   */
  async #attempt<T>(call: CallState<T>, n: number): Promise<T> {
    const started = performance.now();
    const report = (event: Omit<RequestEvent, 'method' | 'path' | 'durationMs' | 'attempt'>): void => {
      if (this.listenerCount('request') === 0) return;
      const durationMs = performance.now() - started;
      this.#emitSafely('request', { method: call.req.method, path: call.req.pattern, durationMs, attempt: n + 1, ...event });
    };
    const fail = (d: Omit<ArvadosApiErrorDetails, 'requestId' | 'request' | 'attempts'>, decision: RetryDecision, protocol = false): ArvadosApiError => {
      const details = { ...d, requestId: call.requestId, request: call.label, attempts: n + 1 };
      return decided(protocol ? new ArvadosProtocolError(details) : new ArvadosApiError(details), decision);
    };

    let res: WireResponse;
    try {
      res = await exchange(call.wire, {
        timeout: Math.min(this.#timeout, Math.max(1, call.deadline - this.#clock.now())),
        maxBytes: Math.min(this.#maxBytes, call.req.maxBytes ?? Infinity),
        maxErrorBytes: MAX_ERROR_BYTES,
        signal: call.signal,
        httpAgent: this.#httpAgent,
        httpsAgent: this.#httpsAgent,
      });
    } catch (err) {
      if (!(err instanceof TransportError)) {
        report({ errorClass: 'aborted' });
        throw err;
      }
      report({ errorClass: err.code });
      const decision: RetryDecision = { retry: err.retryable, ...(err.maxRetries !== undefined ? { maxRetries: err.maxRetries } : {}) };
      throw fail({ status: 0, code: err.code, retryable: err.retryable, errors: [this.#redactor.redact(err.message)] }, decision);
    }

    const { status, body } = res;
    if (status >= 200 && status < 300) {
      const r = this.#accept(call.req, body);
      if (r.ok) {
        report({ status });
        return r.value;
      }
      report({ status, errorClass: 'protocol' });
      // Asking again cannot do a GET or a PUT twice; a POST may already have taken effect.
      const idempotent = call.req.method !== 'POST';
      throw fail({ status, errors: [r.reason], retryable: idempotent }, { retry: idempotent }, true);
    }

    report({ status, errorClass: 'http' });
    const errors = this.#errorsOf(parseJson(body)) ?? [
      `${res.statusText || 'error'}${body ? ` (not an API error body: ${this.#excerpt(body)})` : ''}`,
    ];
    const retryable = isRetryableStatus(status);
    const header = status === 429 || status === 503 ? res.headers['retry-after'] : undefined;
    const retryAfter = parseRetryAfter(typeof header === 'string' ? header : undefined, Date.now());
    const after = retryAfter !== undefined ? { retryAfter } : {};
    throw fail({ status, errors, retryable, ...after }, { retry: retryable, ...(retryAfter !== undefined ? { after: retryAfter } : {}) });
  }

  /** A 2xx body as the call's result, or why it breaks the protocol (redacted). */
  #accept<T>(req: Request<T>, body: string): { ok: true; value: T } | { ok: false; reason: string } {
    if (body === '') return { ok: false, reason: 'empty response body' };
    const parsed = parseJson(body);
    if (parsed === NOT_JSON) return { ok: false, reason: `response is not valid JSON: ${this.#excerpt(body)}` };
    const errors = this.#errorsOf(parsed);
    if (errors && errors.length > 0) return { ok: false, reason: `success status with errors: ${errors.join('; ')}` };
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      return { ok: false, reason: `expected a JSON object, got ${kindOf(parsed)}` };
    }
    const r = req.accept(parsed);
    return r.ok ? r : { ok: false, reason: `malformed answer (${r.reason})` };
  }
}
