/**
 * Arvados API records as they come over the wire. Field names stay snake_case
 * so that anything an Arvados user knows from the API documentation reads the
 * same here. Fields the API server sends as `null` are typed `T | null`.
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
  device_count: number;
  driver_version?: string;
  hardware_target?: string[];
  /** `"cuda"` or `"rocm"` (empty when no GPU is requested). */
  stack?: string;
  vram?: number;
}

/** `runtime_constraints` of a container; the API server fills in defaults. */
export interface RuntimeConstraints {
  API?: boolean;
  /** Bytes of RAM the container needs. */
  ram?: number;
  vcpus?: number;
  keep_cache_ram?: number;
  keep_cache_disk?: number;
  gpu?: GpuConstraints;
  /** Legacy form of `gpu` on older clusters. */
  cuda?: { device_count: number; driver_version?: string; hardware_capability?: string };
  [key: string]: unknown;
}

/** `scheduling_parameters` of a container; the API server fills in defaults. */
export interface SchedulingParameters {
  partitions?: string[];
  preemptible?: boolean;
  /** Seconds; 0 means no limit. */
  max_run_time?: number;
  supervisor?: boolean;
  [key: string]: unknown;
}

/**
 * A container record.
 *
 * `priority` is a 64-bit integer on the server and real clusters send values
 * near 2^60. JavaScript numbers hold integers exactly only up to 2^53, so larger
 * priorities arrive rounded to the nearest double (a relative error below
 * 2^-53, i.e. at most ±128 at 2^60). This library only compares priorities for
 * ordering and never sends one back, so the rounding can at worst swap two
 * containers whose priorities differ by less than that.
 */
export interface Container {
  uuid: string;
  state: ContainerState;
  priority: number;
  /** UUID of the API token (not the user) holding the lock; null unless Locked/Running. */
  locked_by_uuid: string | null;
  auth_uuid?: string | null;
  lock_count?: number;
  runtime_constraints?: RuntimeConstraints;
  scheduling_parameters?: SchedulingParameters;
  command?: string[];
  container_image?: string;
  mounts?: Record<string, unknown>;
  kind?: string;
  etag?: string;
  owner_uuid?: string;
  created_at?: string;
  modified_at?: string;
  modified_by_user_uuid?: string | null;
  cwd?: string;
  environment?: Record<string, string>;
  output_path?: string;
  output_glob?: string[];
  runtime_status?: Record<string, unknown>;
  runtime_user_uuid?: string | null;
  runtime_auth_scopes?: string[];
  started_at?: string | null;
  finished_at?: string | null;
  exit_code?: number | null;
  log?: string | null;
  output?: string | null;
  progress?: number | null;
  gateway_address?: string | null;
  interactive_session_started?: boolean;
  output_storage_classes?: string[];
  output_properties?: Record<string, unknown>;
  cost?: number;
  subrequests_cost?: number;
  service?: boolean;
  published_ports?: Record<string, unknown>;
}

/** The answer of `api_client_authorizations/current`. */
export interface ApiClientAuthorization {
  kind?: string;
  /** The token's UUID: what `locked_by_uuid` holds for containers this token locked. */
  uuid: string;
  owner_uuid?: string;
  /** The secret part of the token. Never log it. */
  api_token?: string;
  scopes?: string[];
  expires_at?: string | null;
  created_at?: string | null;
  [key: string]: unknown;
}

/** The five fields the lock and unlock endpoints answer with. */
export interface LockResult {
  uuid: string;
  state: ContainerState;
  priority: number;
  auth_uuid: string | null;
  locked_by_uuid: string | null;
}

/** A filter operand. */
export type FilterOperand = string | number | boolean | null | Array<string | number | boolean | null>;

/** One list filter, `[attribute, operator, operand]`, e.g. `['priority', '>', '0']`. */
export type Filter = [string, string, FilterOperand];

/** Parameters of a list call (`GET /arvados/v1/containers`). */
export interface ListParams {
  filters?: Filter[];
  /** e.g. `['priority desc']`; the server appends `modified_at desc, uuid desc`. */
  order?: string[] | string;
  /** Page size; the server caps it at its `MaxItemsPerResponse` (default 1000). */
  limit?: number;
  offset?: number;
  /** `exact` (default) adds `items_available`; `none` skips the count. */
  count?: 'exact' | 'none';
  select?: string[];
}

/** A page of containers, in the API's list envelope. */
export interface ContainerList {
  kind?: string;
  etag?: string;
  self_link?: string;
  offset: number;
  /** The limit the server applied, which may be lower than the one requested. */
  limit: number;
  items: Container[];
  /** Present only when `count` is `exact`. */
  items_available?: number;
}

/** A `logs` record as created by {@link ArvadosClient.createLog}. */
export interface LogRecord {
  uuid: string;
  object_uuid: string;
  event_type: string;
  properties: Record<string, unknown>;
  created_at?: string;
  [key: string]: unknown;
}
