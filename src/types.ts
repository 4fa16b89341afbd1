/**
 * Arvados API records as they come over the wire. Field names stay snake_case
 * so that anything an Arvados user knows from the API documentation reads the
 * same here. Fields the API server sends as `null` are typed `T | null`.
 *
 * Records are deeply read-only: the client hands out what it validated, the
 * dispatcher shares one record between its trackers and the runners, and a
 * runner that changed one would change it for everybody else (records handed
 * to runners are frozen at run time, so a write would throw there). To change
 * a container, send a {@link ContainerUpdate} with `ArvadosClient.updateContainer`.
 *
 * @module
 */

/** The states of a container, as the API server names them. */
export const ContainerState = {
  Queued: 'Queued',
  Locked: 'Locked',
  Running: 'Running',
  Complete: 'Complete',
  Cancelled: 'Cancelled',
} as const;

/** One of the five container states. */
export type ContainerState = (typeof ContainerState)[keyof typeof ContainerState];

/** GPU part of {@link RuntimeConstraints}. */
export interface GpuConstraints {
  readonly device_count: number;
  readonly driver_version?: string;
  readonly hardware_target?: readonly string[];
  /** `"cuda"` or `"rocm"` (empty when no GPU is requested). */
  readonly stack?: string;
  readonly vram?: number;
}

/** `runtime_constraints` of a container; the API server fills in defaults. */
export interface RuntimeConstraints {
  readonly API?: boolean;
  /** Bytes of RAM the container needs. */
  readonly ram?: number;
  readonly vcpus?: number;
  readonly keep_cache_ram?: number;
  readonly keep_cache_disk?: number;
  readonly gpu?: GpuConstraints;
  /** Legacy form of `gpu` on older clusters. */
  readonly cuda?: { readonly device_count: number; readonly driver_version?: string; readonly hardware_capability?: string };
  readonly [key: string]: unknown;
}

/** `scheduling_parameters` of a container; the API server fills in defaults. */
export interface SchedulingParameters {
  readonly partitions?: readonly string[];
  readonly preemptible?: boolean;
  /** Seconds; 0 means no limit. */
  readonly max_run_time?: number;
  readonly supervisor?: boolean;
  readonly [key: string]: unknown;
}

/**
 * A container record, deeply read-only (see the module notes).
 *
 * `priority` is a 64-bit integer on the server and real clusters send values
 * near 2^60. JavaScript numbers hold integers exactly only up to 2^53, so larger
 * priorities arrive rounded to the nearest double (a relative error below
 * 2^-53, i.e. at most ±128 at 2^60). This library only compares priorities for
 * ordering and never sends one back, so the rounding can at worst swap two
 * containers whose priorities differ by less than that.
 *
 * Every record the client returns has been checked against this shape: `uuid`
 * is a container UUID, `state` one of the five states, `priority` a
 * non-negative integer, `locked_by_uuid` a UUID or null, and every other field
 * that is present has its documented type. Fields the API adds later are kept
 * as they came.
 */
export interface Container {
  readonly uuid: string;
  readonly state: ContainerState;
  readonly priority: number;
  /** UUID of the API token (not the user) holding the lock; null unless Locked/Running. */
  readonly locked_by_uuid: string | null;
  readonly auth_uuid?: string | null;
  readonly lock_count?: number;
  readonly runtime_constraints?: RuntimeConstraints;
  readonly scheduling_parameters?: SchedulingParameters;
  readonly command?: readonly string[];
  readonly container_image?: string;
  readonly mounts?: Readonly<Record<string, unknown>>;
  readonly kind?: string;
  readonly etag?: string;
  readonly owner_uuid?: string;
  readonly created_at?: string;
  readonly modified_at?: string;
  readonly modified_by_user_uuid?: string | null;
  readonly cwd?: string;
  readonly environment?: Readonly<Record<string, string>>;
  readonly output_path?: string;
  readonly output_glob?: readonly string[];
  readonly runtime_status?: Readonly<Record<string, unknown>>;
  readonly runtime_user_uuid?: string | null;
  readonly runtime_auth_scopes?: readonly string[];
  readonly started_at?: string | null;
  readonly finished_at?: string | null;
  readonly exit_code?: number | null;
  readonly log?: string | null;
  readonly output?: string | null;
  readonly progress?: number | null;
  readonly gateway_address?: string | null;
  readonly interactive_session_started?: boolean;
  readonly output_storage_classes?: readonly string[];
  readonly output_properties?: Readonly<Record<string, unknown>>;
  readonly cost?: number;
  readonly subrequests_cost?: number;
  readonly service?: boolean;
  readonly published_ports?: Readonly<Record<string, unknown>>;
}

/**
 * Attributes for `ArvadosClient.updateContainer`: any subset of a container's
 * fields, writable at the top level so that it can be built step by step
 * (`const attrs: ContainerUpdate = {}; attrs.state = 'Running'`). A
 * `Partial<Container>` is accepted as well.
 */
export type ContainerUpdate = { -readonly [K in keyof Container]?: Container[K] };

/**
 * A container record with only the fields a list call selected (plus `uuid`,
 * which the client always selects so that every item can be identified);
 * the whole {@link Container} when nothing was selected.
 */
export type SelectedContainer<K extends keyof Container> = [keyof Container] extends [K] ? Container : Pick<Container, K | 'uuid'>;

/** The answer of `api_client_authorizations/current`. */
export interface ApiClientAuthorization {
  readonly kind?: string;
  /** The token's UUID: what `locked_by_uuid` holds for containers this token locked. */
  readonly uuid: string;
  readonly owner_uuid?: string;
  /** The secret part of the token. Never log it. */
  readonly api_token?: string;
  readonly scopes?: readonly string[];
  readonly expires_at?: string | null;
  readonly created_at?: string | null;
  readonly [key: string]: unknown;
}

/** The five fields the lock and unlock endpoints answer with. */
export interface LockResult {
  readonly uuid: string;
  readonly state: ContainerState;
  readonly priority: number;
  readonly auth_uuid: string | null;
  readonly locked_by_uuid: string | null;
}

/** A filter operand. */
export type FilterOperand = string | number | boolean | null | Array<string | number | boolean | null>;

/** One list filter, `[attribute, operator, operand]`, e.g. `['priority', '>', '0']`. */
export type Filter = [string, string, FilterOperand];

/**
 * Parameters of a list call (`GET /arvados/v1/containers`).
 *
 * `K` is inferred from `select`, so that the items of the answer are typed
 * with exactly the selected fields.
 */
export interface ListParams<K extends keyof Container = keyof Container> {
  readonly filters?: readonly Filter[];
  /** e.g. `['priority desc']`; the server appends `modified_at desc, uuid desc`. */
  readonly order?: readonly string[] | string;
  /** Page size; the server caps it at its `MaxItemsPerResponse` (default 1000). */
  readonly limit?: number;
  readonly offset?: number;
  /** `exact` (default) adds `items_available`; `none` skips the count. */
  readonly count?: 'exact' | 'none';
  /**
   * Only these fields of each container (the API's `select` parameter, sent
   * as a JSON array). The client adds `uuid` when it is missing, so every item
   * can still be identified; items are checked for the selected fields only.
   * The API refuses (422) a name that is not a container attribute, and drops
   * `order` entries whose column is not selected; each list item also carries
   * `kind`. Omit it for full records.
   *
   * @example
   * ```ts
   * const page = await client.listContainers({ select: ['state', 'priority', 'locked_by_uuid', 'modified_at'] });
   * page.items[0].modified_at; // typed; page.items[0].mounts is a type error
   * ```
   */
  readonly select?: readonly K[];
}

/**
 * A page of containers, in the API's list envelope, as the client returns it:
 * every item has been validated, and items that were not valid containers were
 * left out and counted in `dropped`.
 */
export interface ContainerList<T = Container> {
  readonly kind?: string;
  readonly etag?: string;
  readonly self_link?: string;
  readonly offset: number;
  /** The limit the server applied, which may be lower than the one requested. */
  readonly limit: number;
  readonly items: readonly T[];
  /** Present only when `count` is `exact`. */
  readonly items_available?: number;
  /**
   * How many items of the server's answer were not valid containers and were
   * left out (each is warned about, rate-limited). A caller that concludes
   * anything from a container's absence (e.g. "it is gone") must not do so
   * from a page with `dropped > 0`: the missing one may be among them.
   */
  readonly dropped: number;
}

/**
 * The list envelope as the API server sends it (what `FakeArvados` serves);
 * clients get {@link ContainerList}.
 */
export interface ContainerListEnvelope {
  kind?: string;
  etag?: string;
  self_link?: string;
  offset: number;
  limit: number;
  items: Container[];
  items_available?: number;
}

/** A `logs` record as created by `ArvadosClient.createLog`. */
export interface LogRecord {
  readonly uuid: string;
  readonly object_uuid: string;
  readonly event_type: string;
  readonly properties: Readonly<Record<string, unknown>>;
  readonly created_at?: string;
  readonly [key: string]: unknown;
}

/**
 * The parts of the discovery document (`/discovery/v1/apis/arvados/v1/rest`)
 * that dispatchers use, as `ArvadosClient.discovery` returns them.
 */
export interface DiscoveryDocument {
  /** `/arvados/v1/`; the controller refuses a discovery document without it. */
  readonly basePath: string;
  /** The event stream (`wss://host/websocket`), when the cluster runs `arvados-ws`. */
  readonly websocketUrl?: string;
  /** The cluster id, e.g. `zzzzz`. */
  readonly uuidPrefix?: string;
  /** The API server's cap on `limit`. */
  readonly maxItemsPerResponse?: number;
  /** The API revision, e.g. `20250402`. */
  readonly revision?: string;
  readonly [key: string]: unknown;
}
