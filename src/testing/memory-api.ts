/**
 * `MemoryContainerApi`: the dispatcher's {@link ContainerApi} over a
 * {@link FakeArvados}'s store, in the same process and without HTTP, for
 * tests of scheduling that should take milliseconds.
 *
 * @module
 */
import { ArvadosApiError } from '../client/errors.js';
import type { CallOptions } from '../client/options.js';
import type { ContainerApi } from '../dispatcher/api.js';
import type { ApiClientAuthorization, Container, ContainerList, ContainerUpdate, ListParams, LockResult, LogRecord, SelectedContainer } from '../types.js';
import { ApiError } from './errors.js';
import type { FakeArvados, FakeToken } from './fake-arvados.js';
import type { TokenRecord } from './tokens.js';

/** Most items one walk of {@link MemoryContainerApi.pageContainers} returns, as the client's default bound. */
const MAX_WALK_ITEMS = 1_000_000;

/**
 * The calls a dispatcher makes, answered by a {@link FakeArvados}'s store
 * directly: the same records, rules and errors as over HTTP (a lock race
 * is a 422, a deleted container a 404, as {@link ArvadosApiError}s), but no
 * server, no TLS, no JSON and no timers. The fake need not be started.
 * Faults and overrides of the HTTP layer do not apply; give `fail` to make
 * calls fail.
 *
 * @example
 * ```ts
 * const fake = new FakeArvados();
 * const api = new MemoryContainerApi(fake);
 * const d = new Dispatcher({ api, clock: new TestClock(), handleSignals: false, runContainer });
 * ```
 */
export class MemoryContainerApi implements ContainerApi {
  readonly #fake: FakeArvados;
  readonly #token: FakeToken;
  /** Calls made, by method name. */
  readonly calls = new Map<string, number>();
  /**
   * Called before each call with the method's name and the container's
   * uuid (if any); an error it returns is thrown by the call instead, e.g.
   * `new ArvadosApiError({ status: 503, ... })` for an overloaded API.
   */
  fail: ((method: string, uuid?: string) => Error | undefined) | undefined;

  /** @param token - the token the dispatcher runs as (default the fake's root token). */
  constructor(fake: FakeArvados, token: FakeToken = fake.rootToken) {
    this.#fake = fake;
    this.#token = token;
  }

  /** The token this API acts as; the dispatcher's `locked_by_uuid`. */
  get tokenUuid(): string {
    return this.#token.uuid;
  }

  /** `GET api_client_authorizations/current`. */
  async currentAuthorization(opts?: CallOptions): Promise<ApiClientAuthorization> {
    const me = this.#enter('currentAuthorization', undefined, opts);
    return { kind: 'arvados#apiClientAuthorization', uuid: me.uuid, owner_uuid: me.owner_uuid, scopes: ['all'] };
  }

  /** One page of `GET containers`. */
  async listContainers<K extends keyof Container = keyof Container>(params: ListParams<K> = {}, opts?: CallOptions): Promise<ContainerList<SelectedContainer<K>>> {
    this.#enter('listContainers', undefined, opts);
    return this.#list(params);
  }

  /** Every page of a query, in uuid order with a `uuid >` cursor, as `ArvadosClient.pageContainers` walks them. */
  async *pageContainers<K extends keyof Container = keyof Container>(
    params: Omit<ListParams<K>, 'order' | 'offset' | 'count'> & { maxItems?: number } = {},
    opts?: CallOptions,
  ): AsyncGenerator<ContainerList<SelectedContainer<K>>, void, undefined> {
    const { maxItems = MAX_WALK_ITEMS, ...rest } = params;
    const limit = rest.limit ?? 1000;
    let last: string | undefined;
    let seen = 0;
    while (seen < maxItems) {
      this.#enter('pageContainers', undefined, opts);
      const filters = last === undefined ? (rest.filters ?? []) : [...(rest.filters ?? []), ['uuid', '>', last] as const];
      const page = this.#list<K>({ ...rest, filters: filters as ListParams<K>['filters'], order: ['uuid asc'], count: 'none', limit });
      if (page.items.length === 0) return;
      seen += page.items.length;
      yield page;
      if (page.items.length < page.limit) return;
      last = page.items[page.items.length - 1].uuid;
    }
  }

  /** `GET containers/{uuid}`. */
  async getContainer(uuid: string, opts?: CallOptions): Promise<Container> {
    this.#enter('getContainer', uuid, opts);
    return this.#call(() => structuredClone(this.#fake.store.get(uuid)));
  }

  /** `PUT containers/{uuid}`. */
  async updateContainer(uuid: string, attrs: ContainerUpdate, opts?: CallOptions): Promise<Container> {
    const me = this.#enter('updateContainer', uuid, opts);
    return this.#call(() => structuredClone(this.#fake.store.update(uuid, structuredClone(attrs) as Record<string, unknown>, me)));
  }

  /** `POST containers/{uuid}/lock`. */
  async lockContainer(uuid: string, opts?: CallOptions): Promise<LockResult> {
    const me = this.#enter('lockContainer', uuid, opts);
    return this.#call(() => structuredClone(this.#fake.store.lock(uuid, me)));
  }

  /** `POST containers/{uuid}/unlock`. */
  async unlockContainer(uuid: string, opts?: CallOptions): Promise<LockResult> {
    const me = this.#enter('unlockContainer', uuid, opts);
    return this.#call(() => structuredClone(this.#fake.store.unlock(uuid, me)));
  }

  /** `POST logs`. */
  async createLog(rec: { object_uuid: string; event_type: string; properties: Readonly<Record<string, unknown>> }, opts?: CallOptions): Promise<LogRecord> {
    const me = this.#enter('createLog', rec.object_uuid, opts);
    return this.#call(() => structuredClone(this.#fake.store.createLog(structuredClone(rec), me)));
  }

  /** What a runner would hand to crunch-run: a placeholder host, this token. */
  credentialsEnv(): { ARVADOS_API_HOST: string; ARVADOS_API_TOKEN: string; ARVADOS_API_HOST_INSECURE: string } {
    return { ARVADOS_API_HOST: 'memory.invalid', ARVADOS_API_TOKEN: this.#token.token, ARVADOS_API_HOST_INSECURE: '0' };
  }

  /** Counts the call, honours an aborted signal and `fail`, and returns the caller's token record. */
  #enter(method: string, uuid: string | undefined, opts: CallOptions | undefined): TokenRecord {
    this.calls.set(method, (this.calls.get(method) ?? 0) + 1);
    opts?.signal?.throwIfAborted();
    const err = this.fail?.(method, uuid);
    if (err) throw err;
    const me = this.#fake.store.authenticate(this.#token.token);
    if (!me) throw apiError(new ApiError(401, 'Not logged in'), method);
    return me;
  }

  #list<K extends keyof Container>(params: ListParams<K>): ContainerList<SelectedContainer<K>> {
    const page = this.#call(() => this.#fake.store.list({ ...params }));
    return { ...structuredClone(page), items: structuredClone(page.items) as unknown as Array<SelectedContainer<K>>, dropped: 0 };
  }

  #call<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw err instanceof ApiError ? apiError(err, 'memory') : err;
    }
  }
}

/** The fake's error as the client would have reported it. */
function apiError(err: ApiError, request: string): ArvadosApiError {
  return new ArvadosApiError({ status: err.status, errors: err.messages, retryable: err.status === 429 || err.status >= 500, request, attempts: 1 });
}
