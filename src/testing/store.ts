/**
 * The state behind FakeArvados: tokens, containers and logs, with the API
 * server's container rules (services/api/app/models/container.rb): the state
 * machine, which attributes each state lets whom change, lock and unlock
 * preconditions, `lock_count` and `MaxDispatchAttempts`, and the side effects
 * of each transition (timestamps, lock holder, auth token, runtime_status).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { Container as ApiContainer, ContainerListEnvelope as ContainerList, ContainerState, LockResult, LogRecord } from '../types.js';

// The store changes its rows in place; what it hands out is typed read-only.
type Container = { -readonly [K in keyof ApiContainer]: ApiContainer[K] };
import { ApiError } from './errors.js';
import {
  CONTAINER_ATTRIBUTES,
  comparator,
  compileFilters,
  resolveOrder,
  resolveSelect,
  uuidLowerBound,
} from './query.js';

/** An API token known to the fake. */
export interface TokenRecord {
  /** `zzzzz-gj3su-...`: what `locked_by_uuid` holds for containers this token locked. */
  uuid: string;
  /** The secret (v1 form). The v2 form `v2/<uuid>/<secret>` is accepted too. */
  secret: string;
  owner_uuid: string;
  admin: boolean;
  /** Set for the per-container token made at lock time (`auth_uuid`). */
  containerUuid?: string;
  expired?: boolean;
}

/** A recorded state change, for tests that count runs or locks. */
export interface Transition {
  uuid: string;
  from: ContainerState;
  to: ContainerState;
  /** UUID of the token that made the change; `admin` for side-door changes. */
  by: string;
  at: string;
}

/**
 * One change to a container or one `logs` record, as the API server records
 * it in its `logs` table (audit logging) and its event stream serves it.
 * Attribute maps are the live rows or shallow snapshots: read them at once.
 */
export interface StoreChange {
  /** `create`, `update`, `delete`, or the `event_type` of a log created through the API. */
  event_type: string;
  object_uuid: string;
  object_owner_uuid: string | null;
  event_at: string;
  /** Before the change (null on create). */
  old_attributes: Readonly<Record<string, unknown>> | null;
  /** After the change (null on delete). */
  new_attributes: Readonly<Record<string, unknown>> | null;
  /** For a log created through the API: its own properties. */
  properties?: Readonly<Record<string, unknown>>;
}

/** What `list()` takes: the list parameters after HTTP decoding. */
export interface ListQuery {
  filters?: unknown;
  order?: unknown;
  limit?: unknown;
  offset?: unknown;
  count?: unknown;
  select?: unknown;
}

const TRANSITIONS: Record<ContainerState, ContainerState[]> = {
  Queued: ['Locked', 'Cancelled'],
  Locked: ['Queued', 'Running', 'Cancelled'],
  Running: ['Complete', 'Cancelled'],
  Complete: ['Cancelled'],
  Cancelled: [],
};
const STATES = new Set<string>(Object.keys(TRANSITIONS));
const PROGRESS_ATTRS = ['progress', 'runtime_status', 'subrequests_cost', 'cost', 'log', 'output', 'output_properties', 'exit_code'];
// Keys the API ignores in an update body.
const IGNORED_ATTRS = new Set(['kind', 'etag', 'href', 'created_at', 'modified_by_client_uuid', 'modified_by_user_uuid', 'modified_at']);
const UPDATABLE_ATTRS = new Set<string>([...CONTAINER_ATTRIBUTES, 'secret_mounts', 'runtime_token']);
const STRING_STATUS_KEYS = ['error', 'errorDetail', 'warning', 'warningDetail', 'activity', 'preemptionNotice'];
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

function random36(n: number): string {
  let s = '';
  for (const b of randomBytes(n)) s += (b % 36).toString(36);
  return s;
}

const humanize = (attr: string): string => {
  const s = attr.replace(/_uuid$/, '_uuid').replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
};

function isEmpty(v: unknown): boolean {
  return v === null || v === undefined || (Array.isArray(v) && v.length === 0) ||
    (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
}

/** Rails' `really_changed`: nil, [] and {} are the same; otherwise compare as JSON. */
function reallyChanged(a: unknown, b: unknown): boolean {
  if (isEmpty(a) && isEmpty(b)) return false;
  return JSON.stringify(a) !== JSON.stringify(b);
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Tokens, containers and logs of one fake cluster. */
export class Store {
  readonly clusterId: string;
  maxDispatchAttempts: number;
  maxItemsPerResponse: number;
  readonly logs: LogRecord[] = [];
  readonly transitions: Transition[] = [];
  readonly #containers = new Map<string, Container & { secret_mounts?: unknown; runtime_token?: string | null }>();
  readonly #tokensBySecret = new Map<string, TokenRecord>();
  readonly #tokensByUuid = new Map<string, TokenRecord>();
  // UUIDs in sorted order, rebuilt lazily: lets uuid-ordered pages skip a full sort.
  #sorted: string[] = [];
  #sortedDirty = false;
  #lastNanos = 0n;
  #etag = 0;
  readonly #listeners = new Set<(change: StoreChange) => void>();

  constructor(opts: { clusterId: string; maxDispatchAttempts: number; maxItemsPerResponse: number }) {
    if (!/^[0-9a-z]{5}$/.test(opts.clusterId)) throw new TypeError(`clusterId must be 5 characters [0-9a-z]: ${opts.clusterId}`);
    this.clusterId = opts.clusterId;
    this.maxDispatchAttempts = opts.maxDispatchAttempts;
    this.maxItemsPerResponse = opts.maxItemsPerResponse;
  }

  /** Time now in the API's format; strictly increasing, so `modified_at` orders updates. */
  now(): string {
    let nanos = BigInt(Date.now()) * 1_000_000n;
    if (nanos <= this.#lastNanos) nanos = this.#lastNanos + 1n;
    this.#lastNanos = nanos;
    const ms = Number(nanos / 1_000_000n);
    const frac = String(nanos % 1_000_000_000n).padStart(9, '0');
    return `${new Date(ms).toISOString().slice(0, 19)}.${frac}Z`;
  }

  newUuid(infix: string): string {
    return `${this.clusterId}-${infix}-${random36(15)}`;
  }

  // ---- tokens -------------------------------------------------------------

  addToken(t: Partial<TokenRecord> = {}): TokenRecord {
    const rec: TokenRecord = {
      uuid: t.uuid ?? this.newUuid('gj3su'),
      secret: t.secret ?? random36(50),
      owner_uuid: t.owner_uuid ?? `${this.clusterId}-tpzed-000000000000000`,
      admin: t.admin ?? true,
      containerUuid: t.containerUuid,
    };
    if (this.#tokensByUuid.has(rec.uuid)) throw new TypeError(`token ${rec.uuid} exists`);
    this.#tokensBySecret.set(rec.secret, rec);
    this.#tokensByUuid.set(rec.uuid, rec);
    return rec;
  }

  /** Finds a live token from its v1 or v2 form. */
  authenticate(token: string | undefined): TokenRecord | undefined {
    if (!token) return undefined;
    let rec: TokenRecord | undefined;
    const v2 = /^v2\/([0-9a-z]{5}-gj3su-[0-9a-z]{15})\/([^/]+)(?:\/[^/]+)?$/.exec(token);
    if (v2) {
      rec = this.#tokensByUuid.get(v2[1]);
      if (rec && rec.secret !== v2[2]) rec = undefined;
    } else {
      rec = this.#tokensBySecret.get(token);
    }
    return rec && !rec.expired ? rec : undefined;
  }

  tokenByUuid(uuid: string): TokenRecord | undefined {
    return this.#tokensByUuid.get(uuid);
  }

  revokeToken(uuidOrSecret: string): void {
    const rec = this.#tokensByUuid.get(uuidOrSecret) ?? this.#tokensBySecret.get(uuidOrSecret);
    if (rec) rec.expired = true;
  }

  /**
   * Calls `listener` after every change (container create, update, force,
   * delete; a log created through the API), so that waiters and the event
   * stream need not poll. Returns the function that removes the listener.
   */
  onChange(listener: (change: StoreChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(change: StoreChange): void {
    for (const l of [...this.#listeners]) l(change);
  }

  // ---- containers: reading --------------------------------------------------

  /** The stored row (not a copy): callers inside the fake only. */
  row(uuid: string): (Container & { secret_mounts?: unknown }) | undefined {
    return this.#containers.get(uuid);
  }

  /** All stored rows (not copies). */
  rows(): IterableIterator<Container> {
    return this.#containers.values();
  }

  get size(): number {
    return this.#containers.size;
  }

  /**
   * A row as the API shows it: hidden fields dropped, `select` applied. A deep
   * copy unless `copy` is false, which the HTTP layer uses because it
   * serialises the answer at once (copying every page would dominate the
   * fake's cost on large queues).
   */
  present(row: Container, select?: string[], withKind = false, copy = true): Container {
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

  /** `GET containers/{uuid}`; the answer shares objects with the row (serialise it at once). */
  get(uuid: string, select?: unknown): Container {
    const row = this.#containers.get(uuid);
    if (!row) throw new ApiError(404, 'Path not found');
    return this.present(row, resolveSelect(select), false, false);
  }

  /** `GET containers`; the items share objects with the rows (serialise them at once). */
  list(q: ListQuery): ContainerList {
    const select = resolveSelect(q.select);
    const match = compileFilters(q.filters);
    const order = resolveOrder(q.order, select);
    const limit = this.#intParam(q.limit, 'limit', 100);
    const offset = this.#intParam(q.offset, 'offset', 0);
    const count = q.count ?? 'exact';
    if (count !== 'exact' && count !== 'none' && count !== '') {
      throw new ApiError(422, "count parameter must be 'exact' or 'none'");
    }
    const effLimit = Math.min(limit, this.maxItemsPerResponse);
    const exact = count !== 'none';

    let page: Container[];
    let available = 0;
    if (order[0]?.column === 'uuid') {
      // Walk the sorted index: no sort, and without a count we can stop early.
      const uuids = this.#sortedUuids();
      const desc = order[0].desc;
      const bound = desc ? undefined : uuidLowerBound(q.filters);
      let i = desc ? uuids.length - 1 : bound ? lowerBound(uuids, bound.value, bound.inclusive) : 0;
      page = [];
      let skipped = 0;
      for (; desc ? i >= 0 : i < uuids.length; desc ? i-- : i++) {
        const row = this.#containers.get(uuids[i])!;
        if (!match(row)) continue;
        available++;
        if (skipped < offset) skipped++;
        else if (page.length < effLimit) page.push(row);
        else if (!exact) break;
      }
    } else {
      const all: Container[] = [];
      for (const row of this.#containers.values()) if (match(row)) all.push(row);
      all.sort(comparator(order));
      available = all.length;
      page = all.slice(offset, offset + effLimit);
    }
    const out: ContainerList = {
      kind: 'arvados#containerList',
      etag: '',
      self_link: '',
      offset,
      limit: effLimit,
      items: page.map((r) => this.present(r, select, true, false)),
    };
    if (exact) out.items_available = available;
    return out;
  }

  #intParam(v: unknown, name: string, dflt: number): number {
    if (v === undefined || v === null || v === '') return dflt;
    const s = String(v);
    if (!/^\d+$/.test(s)) throw new ApiError(422, `Invalid value for ${name} parameter`);
    return Number(s);
  }

  #sortedUuids(): string[] {
    if (this.#sortedDirty) {
      this.#sorted = [...this.#containers.keys()].sort();
      this.#sortedDirty = false;
    }
    return this.#sorted;
  }

  // ---- containers: writing --------------------------------------------------

  /** Creates a container (admin side door; defaults like a resolved container request). */
  create(attrs: Partial<Container> & { secret_mounts?: unknown } = {}): Container {
    const now = this.now();
    const uuid = attrs.uuid ?? this.newUuid('dz642');
    if (this.#containers.has(uuid)) throw new ApiError(422, `#<ActiveRecord::RecordNotUnique: uuid ${uuid} exists>`);
    const state = attrs.state ?? 'Queued';
    const row: Container & { secret_mounts?: unknown } = {
      kind: 'arvados#container',
      etag: '',
      uuid,
      owner_uuid: `${this.clusterId}-tpzed-000000000000000`,
      created_at: now,
      modified_at: now,
      modified_by_user_uuid: `${this.clusterId}-tpzed-000000000000000`,
      state,
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
      runtime_user_uuid: `${this.clusterId}-tpzed-000000000000000`,
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
    row.etag = this.#nextEtag();
    if ((state === 'Locked' || state === 'Running') && row.locked_by_uuid && !row.auth_uuid) {
      row.auth_uuid = this.addToken({ containerUuid: uuid, admin: false }).uuid;
    }
    this.#containers.set(uuid, row);
    this.#sortedDirty = true;
    this.#changed('create', row, null);
    return this.present(row);
  }

  /** Deletes a container (admin side door), e.g. to simulate one vanishing. */
  delete(uuid: string): void {
    const row = this.#containers.get(uuid);
    if (row && this.#containers.delete(uuid)) {
      this.#sortedDirty = true;
      this.#changed('delete', null, row);
    }
  }

  /**
   * Side door: sets attributes with no checks at all (test setup). With
   * `touch: false`, as the API's bare SQL priority updates do: no new
   * `modified_at` and no event (the etag, a digest of the record in the
   * API, still changes).
   */
  force(uuid: string, attrs: Partial<Container>, touch = true): Container {
    const row = this.#mustGet(uuid);
    const from = row.state;
    const before = touch && this.#listeners.size > 0 ? { ...row } : undefined;
    Object.assign(row, clone(attrs));
    if (touch) row.modified_at = this.now();
    row.etag = this.#nextEtag();
    if (before) this.#changed('update', row, before);
    if (attrs.state && attrs.state !== from) this.#record(uuid, from, attrs.state, 'admin');
    return this.present(row);
  }

  /** `POST containers/{uuid}/lock` with its exact preconditions. */
  lock(uuid: string, caller: TokenRecord): LockResult {
    const row = this.#mustGet(uuid);
    if (row.state !== 'Queued') throw new ApiError(422, `#<ArvadosModel::LockFailedError: cannot lock when ${row.state}>`);
    this.update(uuid, { state: 'Locked' }, caller);
    return this.#lockResult(row);
  }

  /** `POST containers/{uuid}/unlock` with its exact preconditions. */
  unlock(uuid: string, caller: TokenRecord): LockResult {
    const row = this.#mustGet(uuid);
    if (row.state !== 'Locked') {
      throw new ApiError(422, `#<ArvadosModel::InvalidStateTransitionError: cannot unlock when ${row.state}>`);
    }
    this.update(uuid, { state: 'Queued' }, caller);
    return this.#lockResult(row);
  }

  /**
   * `PUT containers/{uuid}`: applies `attrs` as `caller`, following
   * container.rb's callbacks and validations, or throws the API's error.
   */
  update(uuid: string, rawAttrs: Record<string, unknown>, caller: TokenRecord, select?: unknown): Container {
    const row = this.#mustGet(uuid);
    const sel = resolveSelect(select);
    const attrs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(rawAttrs)) {
      if (IGNORED_ATTRS.has(k)) continue;
      if (!UPDATABLE_ATTRS.has(k)) throw new ApiError(422, `#<ActiveModel::UnknownAttributeError: unknown attribute '${k}' for Container.>`);
      attrs[k] = v;
    }
    if (attrs.uuid !== undefined && attrs.uuid !== uuid) throw new ApiError(422, 'Uuid cannot be changed');
    delete attrs.uuid;

    const old = row.state;
    let next: ContainerState = old;
    if (attrs.state !== undefined) {
      if (typeof attrs.state !== 'string' || !STATES.has(attrs.state)) {
        throw new ApiError(422, `State is not included in the list`);
      }
      next = attrs.state as ContainerState;
    }
    const changed = (k: string): boolean => k in attrs && reallyChanged((row as unknown as Record<string, unknown>)[k], attrs[k]);
    const stateChanging = next !== old;
    let maxAttemptsCancel = false;
    let lockCount = row.lock_count ?? 0;

    // before_validation: check_lock / check_unlock
    if (old === 'Queued' && next === 'Locked') {
      const priority = 'priority' in attrs ? Number(attrs.priority) : row.priority;
      if (!(priority > 0)) throw new ApiError(422, '#<ArvadosModel::LockFailedError: cannot lock when priority<=0>');
      lockCount += 1;
    }
    if (old === 'Locked' && next === 'Queued') {
      if (row.locked_by_uuid !== caller.uuid) {
        throw new ApiError(403, '#<ArvadosModel::PermissionDeniedError: locked by a different token>');
      }
      if (lockCount >= this.maxDispatchAttempts) {
        next = 'Cancelled';
        maxAttemptsCancel = true;
      }
    }

    // validate_state_change
    if (stateChanging && !TRANSITIONS[old].includes(next)) {
      throw new ApiError(422, `State cannot change from ${old} to ${next}`);
    }

    // validate_change: which attributes may change, and by whom
    const permitted = new Set<string>(['state']);
    const add = (...a: string[]): void => a.forEach((x) => permitted.add(x));
    switch (next) {
      case 'Queued':
        add('priority');
        break;
      case 'Locked':
        add('priority', 'runtime_status', 'log', 'lock_count');
        break;
      case 'Running':
        add('priority', 'output_properties', 'gateway_address', ...PROGRESS_ATTRS);
        if (stateChanging) add('started_at');
        if (!row.interactive_session_started) add('interactive_session_started');
        break;
      case 'Complete':
        if (old === 'Running') add('finished_at', ...PROGRESS_ATTRS);
        break;
      case 'Cancelled':
        if (old === 'Running') add('finished_at', ...PROGRESS_ATTRS);
        else if (old === 'Queued' || old === 'Locked') add('finished_at', 'log', 'runtime_status', 'cost');
        break;
    }
    const ownToken = old === 'Running' && caller.containerUuid === uuid;
    if (ownToken) {
      add('finished_at');
      permitted.delete('log');
      permitted.delete('priority');
    } else if (!caller.admin) {
      throw new ApiError(403, '#<ArvadosModel::PermissionDeniedError: ArvadosModel::PermissionDeniedError>');
    } else if (row.locked_by_uuid && row.locked_by_uuid !== caller.uuid) {
      PROGRESS_ATTRS.forEach((a) => permitted.delete(a));
    }
    const errors: string[] = [];
    for (const k of Object.keys(attrs)) {
      if (k === 'state' || k === 'locked_by_uuid' || k === 'auth_uuid') continue;
      if (changed(k) && !permitted.has(k)) {
        const cur = (row as unknown as Record<string, unknown>)[k];
        errors.push(`${humanize(k)} cannot be modified in state '${next}' (${JSON.stringify(cur ?? null)}, ${JSON.stringify(attrs[k] ?? null)})`);
      }
    }

    // other validations
    if ('priority' in attrs && !(Number.isInteger(attrs.priority) && (attrs.priority as number) >= 0)) {
      errors.push('Priority must be an integer greater than or equal to 0');
    }
    if ('runtime_status' in attrs) {
      const rs = attrs.runtime_status;
      if (rs !== null && (typeof rs !== 'object' || Array.isArray(rs))) errors.push('Runtime status must be a hash');
      else for (const key of STRING_STATUS_KEYS) {
        const v = (rs as Record<string, unknown> | null)?.[key];
        if (v !== undefined && typeof v !== 'string') errors.push(`Runtime status ${key} must be a string`);
      }
    }
    let expectedLock: string | null = row.locked_by_uuid;
    if (next === 'Locked' && old === 'Queued') expectedLock = caller.uuid;
    else if (next !== 'Locked' && next !== 'Running') expectedLock = null;
    if ('locked_by_uuid' in attrs && attrs.locked_by_uuid !== expectedLock && attrs.locked_by_uuid !== row.locked_by_uuid) {
      errors.push(`Locked by uuid can only change to ${expectedLock ?? 'nil'}`);
    }
    if ('auth_uuid' in attrs && changed('auth_uuid')) errors.push('Auth uuid is readonly');
    if ('exit_code' in attrs && changed('exit_code') && attrs.exit_code !== null && !Number.isInteger(attrs.exit_code)) {
      errors.push('Exit code must be an integer');
    }
    if (errors.length) throw new ApiError(422, ...errors);

    // Apply.
    const before = this.#listeners.size > 0 ? { ...row } : undefined;
    const now = this.now();
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'locked_by_uuid' || k === 'auth_uuid') continue;
      (row as unknown as Record<string, unknown>)[k] = clone(v);
    }
    row.state = next;
    row.lock_count = lockCount;
    row.locked_by_uuid = expectedLock;
    if (old === 'Queued' && next === 'Locked') {
      row.auth_uuid = this.addToken({ containerUuid: uuid, admin: false, owner_uuid: row.runtime_user_uuid ?? undefined }).uuid;
    }
    if (stateChanging && next === 'Running' && !('started_at' in attrs && attrs.started_at)) row.started_at = now;
    if (next === 'Queued' || next === 'Complete' || next === 'Cancelled') {
      if (row.auth_uuid) this.revokeToken(row.auth_uuid);
      row.auth_uuid = null;
    }
    if (stateChanging && (next === 'Complete' || next === 'Cancelled')) {
      // set_timestamps runs before check_unlock, so the MaxDispatchAttempts cancel has no finished_at.
      if (!maxAttemptsCancel && !('finished_at' in attrs && attrs.finished_at)) row.finished_at = now;
      delete row.secret_mounts;
      (row as { runtime_token?: unknown }).runtime_token = null;
    }
    if (old === 'Locked' && next === 'Queued') row.runtime_status = {};
    if (maxAttemptsCancel) {
      row.runtime_status = {
        error: `Failed to start container.  Cancelled after exceeding 'Containers.MaxDispatchAttempts' (lock_count=${lockCount})`,
      };
    }
    row.modified_at = now;
    row.modified_by_user_uuid = caller.owner_uuid;
    row.etag = this.#nextEtag();
    if (stateChanging) this.#record(uuid, old, next, caller.uuid);
    if (before) this.#changed('update', row, before);
    return this.present(row, sel);
  }

  /** `POST logs`: any valid token may create one. */
  createLog(attrs: Record<string, unknown>, caller: TokenRecord): LogRecord {
    if (typeof attrs.object_uuid !== 'string' || typeof attrs.event_type !== 'string') {
      throw new ApiError(422, 'Object uuid and event type are required');
    }
    const now = this.now();
    const rec: LogRecord = {
      kind: 'arvados#log',
      uuid: this.newUuid('57u5n'),
      owner_uuid: caller.owner_uuid,
      object_uuid: attrs.object_uuid,
      event_type: attrs.event_type,
      properties: (attrs.properties && typeof attrs.properties === 'object' ? clone(attrs.properties) : {}) as Record<string, unknown>,
      summary: typeof attrs.summary === 'string' ? attrs.summary : null,
      event_at: now,
      created_at: now,
      modified_at: now,
    };
    this.logs.push(rec);
    this.#notify({
      event_type: rec.event_type,
      object_uuid: rec.object_uuid,
      object_owner_uuid: this.#containers.get(rec.object_uuid)?.owner_uuid ?? null,
      event_at: now,
      old_attributes: null,
      new_attributes: null,
      properties: rec.properties,
    });
    return clone(rec);
  }

  #mustGet(uuid: string): Container & { secret_mounts?: unknown } {
    const row = this.#containers.get(uuid);
    if (!row) throw new ApiError(404, 'Path not found');
    return row;
  }

  #lockResult(row: Container): LockResult {
    return { uuid: row.uuid, state: row.state, priority: row.priority, auth_uuid: row.auth_uuid ?? null, locked_by_uuid: row.locked_by_uuid };
  }

  #nextEtag(): string {
    return (++this.#etag).toString(36).padStart(8, '0') + random36(17);
  }

  #changed(type: 'create' | 'update' | 'delete', row: Container | null, before: Container | null): void {
    const obj = (row ?? before)!;
    this.#notify({
      event_type: type,
      object_uuid: obj.uuid,
      object_owner_uuid: obj.owner_uuid ?? null,
      event_at: row?.modified_at ?? this.now(),
      old_attributes: before as unknown as Record<string, unknown> | null,
      new_attributes: row as unknown as Record<string, unknown> | null,
    });
  }

  #record(uuid: string, from: ContainerState, to: ContainerState, by: string): void {
    this.transitions.push({ uuid, from, to, by, at: this.now() });
  }
}

/** First index in sorted `arr` whose value is > (or >= when inclusive) `value`. */
function lowerBound(arr: string[], value: string, inclusive: boolean): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid] < value || (!inclusive && arr[mid] === value)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
