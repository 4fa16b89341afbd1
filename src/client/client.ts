/**
 * `ArvadosClient`: the few API calls a dispatcher makes, sent the way the Go
 * and Python SDKs send them (Bearer token, a request id kept across retries,
 * JSON-encoded list parameters, long queries as POST with `_method=GET`).
 *
 * @module
 */
import * as http from 'node:http';
import * as https from 'node:https';
import axios, { type AxiosResponse } from 'axios';
import { isContainerUuid } from '../uuid.js';
import { logger } from '../log.js';
import type {
  ApiClientAuthorization,
  Container,
  ContainerList,
  Filter,
  ListParams,
  LockResult,
  LogRecord,
} from '../types.js';
import { settingsFromEnv } from './config.js';
import { ArvadosApiError, ArvadosConfigError } from './errors.js';
import {
  backoffDelay,
  isRetryableStatus,
  isTlsVerificationCode,
  parseRetryAfter,
  sleep,
  type RetryPolicy,
} from './retry.js';

const log = logger('client');

/** Options of {@link ArvadosClient}. */
export interface ArvadosClientOptions {
  /**
   * `host[:port]` of the API server; https is assumed. An explicit
   * `http://` or `https://` prefix is accepted too (e.g. for a plain-HTTP
   * test server).
   */
  apiHost: string;
  /** The API token. It is sent only in the Authorization header and never logged. */
  apiToken: string;
  /** Skip TLS certificate verification (`ARVADOS_API_HOST_INSECURE`). Default false. */
  insecure?: boolean;
  /** Per-attempt timeout in ms, covering connect to last byte. Default 30 000. */
  timeout?: number;
  /** Retries after the first attempt, for retryable failures only. Default 4. */
  retries?: number;
  /** First retry delay in ms (grows exponentially, with jitter). Default 500. */
  retryDelay?: number;
  /** Cap on a computed retry delay, ms. Default 10 000. */
  maxRetryDelay?: number;
  /** A `Retry-After` above this many ms gives up instead of waiting. Default 60 000. */
  maxRetryAfter?: number;
  /** Extra CA certificates (PEM) to trust, e.g. `FakeArvados#caCert`. */
  ca?: string | string[];
  /** Encoded query length above which a GET is sent as POST with `_method=GET`. Default 1000. */
  maxQueryLength?: number;
  /**
   * An agent for the connections, e.g. one that tunnels through a proxy
   * (https-proxy-agent). `HTTPS_PROXY` is not read: axios would send https
   * requests to a proxy without a CONNECT tunnel, and resolving it per request
   * costs more than the request itself on a fast local network.
   */
  agent?: http.Agent;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborts the call, including any wait between retries. */
  signal?: AbortSignal;
}

type Params = Record<string, unknown>;

interface Request {
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  query?: Params;
  body?: Params;
  /** Shown in errors and logs instead of the full path, e.g. `POST containers/{uuid}/lock`. */
  label: string;
  /** Keys the answer must have; a 2xx answer without them is treated like a garbled one. */
  expect?: string[];
}

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

/** A short, single-line excerpt of a body that is not the JSON we expected. */
function excerpt(body: string): string {
  const text = body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

function errorsOf(parsed: unknown): string[] | undefined {
  if (parsed && typeof parsed === 'object' && Array.isArray((parsed as { errors?: unknown }).errors)) {
    return (parsed as { errors: unknown[] }).errors.map(String);
  }
  return undefined;
}

/**
 * A client for the parts of the Arvados API that dispatchers use.
 *
 * @example
 * ```ts
 * const client = ArvadosClient.fromEnv();
 * const me = await client.currentAuthorization();
 * const page = await client.listContainers({ filters: [['state', '=', 'Queued']], limit: 10 });
 * ```
 */
export class ArvadosClient {
  /** `https://host:port` the client talks to. */
  readonly baseUrl: string;
  /** `host:port` as configured (without scheme when https). */
  readonly apiHost: string;
  /** Whether TLS verification is off. */
  readonly insecure: boolean;
  // Private so that neither util.inspect nor JSON.stringify of a client shows it.
  readonly #token: string;
  readonly #policy: RetryPolicy;
  readonly #timeout: number;
  readonly #maxQueryLength: number;
  readonly #httpAgent: http.Agent;
  readonly #httpsAgent: https.Agent;

  constructor(opts: ArvadosClientOptions) {
    if (!opts || typeof opts.apiToken !== 'string' || opts.apiToken.trim() === '') {
      throw new ArvadosConfigError('apiToken is missing');
    }
    if (/\s/.test(opts.apiToken.trim())) throw new ArvadosConfigError('apiToken contains whitespace');
    this.baseUrl = parseUrl(opts.apiHost ?? '');
    this.apiHost = this.baseUrl.replace(/^https:\/\//, '');
    this.insecure = opts.insecure ?? false;
    this.#token = opts.apiToken.trim();
    this.#timeout = opts.timeout ?? 30_000;
    this.#maxQueryLength = opts.maxQueryLength ?? 1000;
    this.#policy = {
      retries: Math.max(0, opts.retries ?? 4),
      baseDelay: opts.retryDelay ?? 500,
      maxDelay: opts.maxRetryDelay ?? 10_000,
      maxRetryAfter: opts.maxRetryAfter ?? 60_000,
    };
    this.#httpAgent = opts.agent ?? new http.Agent({ keepAlive: true });
    this.#httpsAgent = (opts.agent as https.Agent | undefined) ?? new https.Agent({
      keepAlive: true,
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

  /** Closes idle keep-alive connections. The client stays usable. */
  close(): void {
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  /** `GET /arvados/v1/api_client_authorizations/current`: who this token is. */
  currentAuthorization(opts?: CallOptions): Promise<ApiClientAuthorization> {
    return this.#call<ApiClientAuthorization>(
      { method: 'GET', path: 'api_client_authorizations/current', label: 'GET api_client_authorizations/current', expect: ['uuid'] },
      opts,
    );
  }

  /** One page of `GET /arvados/v1/containers`. */
  async listContainers(params: ListParams = {}, opts?: CallOptions): Promise<ContainerList> {
    const list = await this.#call<ContainerList>(
      { method: 'GET', path: 'containers', query: { ...params }, label: 'GET containers', expect: ['items'] },
      opts,
    );
    if (!Array.isArray(list.items)) {
      throw new ArvadosApiError({ status: 200, errors: ['list answer has no items array'], retryable: true, request: 'GET containers', attempts: 1 });
    }
    return list;
  }

  /**
   * Walks every page of a container query, yielding each page's items.
   *
   * Pages are taken in UUID order with a `uuid > last` cursor (keyset paging)
   * instead of offsets, so records that leave the result set while it is being
   * walked (e.g. because they were just locked) cannot make later records
   * shift past an offset and be skipped. `params.order` and `params.offset`
   * are therefore ignored. The walk ends on an empty page or one shorter than
   * the limit the server applied.
   */
  async *pageContainers(params: Omit<ListParams, 'order' | 'offset' | 'count'> = {}, opts?: CallOptions): AsyncGenerator<Container[]> {
    const filters: Filter[] = params.filters ?? [];
    const limit = params.limit ?? 1000;
    let last: string | undefined;
    for (;;) {
      const page = await this.listContainers(
        {
          ...params,
          filters: last === undefined ? filters : [...filters, ['uuid', '>', last]],
          order: ['uuid asc'],
          count: 'none',
          limit,
        },
        opts,
      );
      const items = page.items;
      if (items.length === 0) return;
      yield items;
      const applied = typeof page.limit === 'number' && page.limit > 0 ? page.limit : limit;
      if (items.length < applied) return;
      const next = items[items.length - 1].uuid;
      // A server that does not honour the cursor would loop forever; stop instead.
      if (last !== undefined && next <= last) {
        throw new ArvadosApiError({
          status: 200,
          errors: ['server ignored the uuid paging cursor'],
          retryable: false,
          request: 'GET containers',
          attempts: 1,
        });
      }
      last = next;
    }
  }

  /** Every container matching `params`, walking all pages (see {@link pageContainers}). */
  async listAllContainers(params: Omit<ListParams, 'order' | 'offset' | 'count'> = {}, opts?: CallOptions): Promise<Container[]> {
    const all: Container[] = [];
    for await (const page of this.pageContainers(params, opts)) all.push(...page);
    return all;
  }

  /** `GET /arvados/v1/containers/{uuid}`. */
  async getContainer(uuid: string, opts?: CallOptions): Promise<Container> {
    return this.#call<Container>({ method: 'GET', path: this.#containerPath(uuid), label: 'GET containers/{uuid}', expect: ['uuid', 'state'] }, opts);
  }

  /** `PUT /arvados/v1/containers/{uuid}` with `{"container": attrs}`; answers the updated record. */
  async updateContainer(uuid: string, attrs: Partial<Container>, opts?: CallOptions): Promise<Container> {
    return this.#call<Container>(
      { method: 'PUT', path: this.#containerPath(uuid), body: { container: attrs }, label: 'PUT containers/{uuid}' },
      opts,
    );
  }

  /**
   * `POST /arvados/v1/containers/{uuid}/lock`. Only one of several concurrent
   * lockers can win; the others get HTTP 422.
   */
  async lockContainer(uuid: string, opts?: CallOptions): Promise<LockResult> {
    return this.#call<LockResult>(
      { method: 'POST', path: `${this.#containerPath(uuid)}/lock`, label: 'POST containers/{uuid}/lock', expect: ['uuid', 'state'] },
      opts,
    );
  }

  /** `POST /arvados/v1/containers/{uuid}/unlock`; only the locking token may unlock. */
  async unlockContainer(uuid: string, opts?: CallOptions): Promise<LockResult> {
    return this.#call<LockResult>(
      { method: 'POST', path: `${this.#containerPath(uuid)}/unlock`, label: 'POST containers/{uuid}/unlock', expect: ['uuid', 'state'] },
      opts,
    );
  }

  /** `POST /arvados/v1/logs`, e.g. a `dispatch` event about a container. */
  createLog(
    rec: { object_uuid: string; event_type: string; properties: Record<string, unknown> },
    opts?: CallOptions,
  ): Promise<LogRecord> {
    return this.#call<LogRecord>({ method: 'POST', path: 'logs', body: { log: rec }, label: 'POST logs' }, opts);
  }

  #containerPath(uuid: string): string {
    if (!isContainerUuid(uuid)) throw new TypeError(`not a container UUID: ${JSON.stringify(uuid)}`);
    return `containers/${uuid}`;
  }

  /** Replaces the token wherever a server might have echoed it. */
  #redact(text: string): string {
    return text.split(this.#token).join('***');
  }

  async #call<T>(req: Request, opts: CallOptions = {}): Promise<T> {
    const requestId = newRequestId();
    const url = `${this.baseUrl}/arvados/v1/${req.path}`;
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.#token}`,
      'X-Request-Id': requestId,
      Accept: 'application/json',
    };
    let method: string = req.method;
    let fullUrl = url;
    let data: string | undefined;
    if (req.query) {
      const qs = encodeParams(req.query).toString();
      if (qs.length > this.#maxQueryLength) {
        // Rails honours _method=GET in a form body; the URL stays short.
        method = 'POST';
        data = `_method=GET&${qs}`;
        headers['Content-Type'] = 'application/x-www-form-urlencoded';
        headers['X-Http-Method-Override'] = 'GET';
      } else if (qs) {
        fullUrl = `${url}?${qs}`;
      }
    } else if (req.body) {
      data = JSON.stringify(req.body);
      headers['Content-Type'] = 'application/json';
    }

    const fail = (d: { status: number; errors: string[]; retryable: boolean; code?: string }, attempts: number) =>
      new ArvadosApiError({ ...d, errors: d.errors.map((e) => this.#redact(e)), requestId, request: req.label, attempts });

    for (let attempt = 0; ; attempt++) {
      const attempts = attempt + 1;
      const canRetry = attempt < this.#policy.retries;
      if (opts.signal?.aborted) throw opts.signal.reason;
      const timeout = AbortSignal.timeout(this.#timeout);
      const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
      let res: AxiosResponse<string>;
      try {
        res = await axios.request<string>({
          method,
          url: fullUrl,
          headers,
          data,
          signal,
          responseType: 'text',
          transformResponse: [(d: string) => d],
          validateStatus: () => true,
          maxRedirects: 0,
          proxy: false,
          httpAgent: this.#httpAgent,
          httpsAgent: this.#httpsAgent,
        });
      } catch (err) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        const e = err as { code?: string; message?: string; cause?: { code?: string } };
        let code = e.cause?.code ?? e.code;
        if (timeout.aborted || code === 'ECONNABORTED' || code === 'ERR_CANCELED') code = 'ETIMEDOUT';
        if (isTlsVerificationCode(code)) {
          throw fail(
            {
              status: 0,
              code,
              retryable: false,
              errors: [
                `TLS certificate of ${this.apiHost} is not trusted (${code}); ` +
                  'if this is a test server you trust, set ARVADOS_API_HOST_INSECURE=1',
              ],
            },
            attempts,
          );
        }
        const what =
          code === 'ETIMEDOUT'
            ? `no response within ${this.#timeout} ms`
            : `${code ?? 'transport error'}: ${e.message ?? 'request failed'}`;
        const error = fail({ status: 0, code: code ?? 'EIO', retryable: true, errors: [what] }, attempts);
        if (!canRetry) throw error;
        const delay = backoffDelay(attempt, this.#policy);
        log('%s %s (%s); retry %d in %d ms', req.label, what, requestId, attempts, Math.round(delay));
        await sleep(delay, opts.signal);
        continue;
      }

      const status = res.status;
      const body = typeof res.data === 'string' ? res.data : String(res.data ?? '');
      let parsed: unknown;
      let parseError = false;
      try {
        parsed = body === '' ? undefined : JSON.parse(body);
      } catch {
        parseError = true;
      }

      if (status >= 200 && status < 300) {
        const shapeOk =
          !parseError && parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) &&
          (req.expect ?? []).every((k) => k in (parsed as object));
        if (shapeOk) return parsed as T;
        const problem =
          body === '' ? 'empty response body'
            : parseError ? `response is not valid JSON: ${excerpt(body)}`
              : `unexpected response (expected an object with ${(req.expect ?? []).join(', ') || 'fields'}): ${excerpt(body)}`;
        const error = fail(
          {
            status,
            retryable: true,
            errors: [problem],
          },
          attempts,
        );
        if (!canRetry) throw error;
        const delay = backoffDelay(attempt, this.#policy);
        log('%s: unparseable %d answer (%s); retry %d in %d ms', req.label, status, requestId, attempts, Math.round(delay));
        await sleep(delay, opts.signal);
        continue;
      }

      const errors = errorsOf(parsed) ?? [
        `${res.statusText || 'error'}${body ? ` (not an API error body: ${excerpt(body)})` : ''}`,
      ];
      const retryable = isRetryableStatus(status);
      const error = fail({ status, errors, retryable }, attempts);
      if (!retryable || !canRetry) throw error;
      let delay = backoffDelay(attempt, this.#policy);
      if (status === 429 || status === 503) {
        const header = res.headers['retry-after'];
        const after = parseRetryAfter(typeof header === 'string' ? header : undefined);
        if (after !== undefined) {
          if (after > this.#policy.maxRetryAfter) throw error;
          delay = after;
        }
      }
      log('%s: HTTP %d (%s); retry %d in %d ms', req.label, status, requestId, attempts, Math.round(delay));
      await sleep(delay, opts.signal);
    }
  }
}
