/**
 * A container as FakeArvados stores it: the API's record, mutable, with the
 * fields the API never shows (`secret_mounts`, `runtime_token`); the
 * defaults a new one gets; and how a row is shown through the API.
 *
 * @module
 */
import type { Container } from '../types.js';

/** A stored container: changed in place by the store, handed out read-only. */
export type ContainerRow = { -readonly [K in keyof Container]: Container[K] } & {
  secret_mounts?: unknown;
  runtime_token?: string | null;
};

/** Fields stored but never shown, as the API server hides them. */
const HIDDEN = new Set(['secret_mounts', 'runtime_token']);

const RUNTIME_CONSTRAINT_DEFAULTS = {
  API: false,
  gpu: { device_count: 0, driver_version: '', hardware_target: [], stack: '', vram: 0 },
  keep_cache_disk: 0,
  keep_cache_ram: 0,
  ram: 0,
  // The API server refuses a container request without vCPUs; 0 is a bad answer.
  vcpus: 1,
};
const SCHEDULING_DEFAULTS = { max_run_time: 0, partitions: [], preemptible: false, supervisor: false };

/** A deep copy: what the store hands out must not share objects with its rows. */
export function clone<T>(v: T): T {
  return structuredClone(v);
}

/**
 * A new row with the defaults of a resolved container request, `attrs`
 * (copied) over them; the etag is left for the store to set.
 */
export function newContainerRow(uuid: string, clusterId: string, now: string, attrs: Partial<ContainerRow>): ContainerRow {
  return {
    kind: 'arvados#container',
    etag: '',
    uuid,
    owner_uuid: `${clusterId}-tpzed-000000000000000`,
    created_at: now,
    modified_at: now,
    modified_by_user_uuid: `${clusterId}-tpzed-000000000000000`,
    state: attrs.state ?? 'Queued',
    started_at: null,
    finished_at: null,
    log: null,
    environment: {},
    cwd: '/tmp',
    command: ['echo', 'hello'],
    output_path: '/tmp',
    output_glob: [],
    mounts: {},
    output: null,
    container_image: 'd41d8cd98f00b204e9800998ecf8427e+0',
    progress: null,
    priority: 1,
    exit_code: null,
    auth_uuid: null,
    locked_by_uuid: null,
    runtime_status: {},
    runtime_user_uuid: `${clusterId}-tpzed-000000000000000`,
    runtime_auth_scopes: ['all'],
    lock_count: 0,
    gateway_address: null,
    interactive_session_started: false,
    output_storage_classes: ['default'],
    output_properties: {},
    cost: 0,
    subrequests_cost: 0,
    service: false,
    published_ports: {},
    ...clone(attrs),
    runtime_constraints: { ...clone(RUNTIME_CONSTRAINT_DEFAULTS), ...clone(attrs.runtime_constraints ?? {}) },
    scheduling_parameters: { ...clone(SCHEDULING_DEFAULTS), ...clone(attrs.scheduling_parameters ?? {}) },
  };
}

/**
 * A row as the API shows it: hidden fields dropped, `select` applied. A deep
 * copy unless `copy` is false, which the HTTP layer uses because it
 * serialises the answer at once (copying every page would dominate the
 * fake's cost on large queues).
 */
export function presentRow(row: ContainerRow, select?: string[], withKind = false, copy = true): Container {
  const out: Record<string, unknown> = {};
  const src = row as unknown as Record<string, unknown>;
  if (select) {
    for (const k of select) out[k] = src[k] ?? null;
    if (withKind) out.kind = 'arvados#container';
  } else {
    for (const k in src) if (!HIDDEN.has(k)) out[k] = src[k];
  }
  return (copy ? clone(out) : out) as unknown as Container;
}
