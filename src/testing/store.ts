/**
 * The state behind FakeArvados: tokens, containers and logs of one fake
 * cluster, changed only through the API's rules (see `container-rules.ts`),
 * with the side effects of each transition (timestamps, lock holder, auth
 * token, runtime_status), the record of every state change, and change
 * notifications for waiters and the event stream.
 *
 * @module
 */
import type { Container, ContainerListEnvelope, ContainerState, LockResult, LogRecord } from '../types.js';
import { checkLock, checkUnlock, planUpdate } from './container-rules.js';
import { clone, newContainerRow, presentRow, type ContainerRow } from './container-row.js';
import { ContainerTable, type ListQuery } from './container-table.js';
import { ApiError } from './errors.js';
import { resolveSelect } from './query.js';
import { random36 } from './random-id.js';
import { TokenTable, type TokenRecord } from './tokens.js';

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

/** Tokens, containers and logs of one fake cluster. */
export class Store {
  readonly clusterId: string;
  maxDispatchAttempts: number;
  maxItemsPerResponse: number;
  readonly logs: LogRecord[] = [];
  readonly transitions: Transition[] = [];
  readonly #containers = new ContainerTable();
  readonly #tokens: TokenTable;
  #lastNanos = 0n;
  #etag = 0;
  readonly #listeners = new Set<(change: StoreChange) => void>();

  constructor(opts: { clusterId: string; maxDispatchAttempts: number; maxItemsPerResponse: number }) {
    if (!/^[0-9a-z]{5}$/.test(opts.clusterId)) throw new TypeError(`clusterId must be 5 characters [0-9a-z]: ${opts.clusterId}`);
    this.clusterId = opts.clusterId;
    this.maxDispatchAttempts = opts.maxDispatchAttempts;
    this.maxItemsPerResponse = opts.maxItemsPerResponse;
    this.#tokens = new TokenTable(opts.clusterId);
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
    return this.#tokens.add(t);
  }

  /** Finds a live token from its v1 or v2 form. */
  authenticate(token: string | undefined): TokenRecord | undefined {
    return this.#tokens.authenticate(token);
  }

  tokenByUuid(uuid: string): TokenRecord | undefined {
    return this.#tokens.byUuid(uuid);
  }

  revokeToken(uuidOrSecret: string): void {
    this.#tokens.revoke(uuidOrSecret);
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
  row(uuid: string): ContainerRow | undefined {
    return this.#containers.get(uuid);
  }

  /** All stored rows (not copies). */
  rows(): IterableIterator<ContainerRow> {
    return this.#containers.values();
  }

  get size(): number {
    return this.#containers.size;
  }

  /** See {@link presentRow}. */
  present(row: ContainerRow, select?: string[], withKind = false, copy = true): Container {
    return presentRow(row, select, withKind, copy);
  }

  /** `GET containers/{uuid}`; the answer shares objects with the row (serialise it at once). */
  get(uuid: string, select?: unknown): Container {
    const row = this.#containers.get(uuid);
    if (!row) throw new ApiError(404, 'Path not found');
    return presentRow(row, resolveSelect(select), false, false);
  }

  /** `GET containers`; the items share objects with the rows (serialise them at once). */
  list(q: ListQuery): ContainerListEnvelope {
    return this.#containers.list(q, this.maxItemsPerResponse);
  }

  // ---- containers: writing --------------------------------------------------

  /** Creates a container (admin side door; defaults like a resolved container request). */
  create(attrs: Partial<ContainerRow> = {}): Container {
    const now = this.now();
    const uuid = attrs.uuid ?? this.newUuid('dz642');
    if (this.#containers.has(uuid)) throw new ApiError(422, `#<ActiveRecord::RecordNotUnique: uuid ${uuid} exists>`);
    const state = attrs.state ?? 'Queued';
    const row = newContainerRow(uuid, this.clusterId, now, attrs);
    row.etag = this.#nextEtag();
    if ((state === 'Locked' || state === 'Running') && row.locked_by_uuid && !row.auth_uuid) {
      row.auth_uuid = this.addToken({ containerUuid: uuid, admin: false }).uuid;
    }
    this.#containers.add(uuid, row);
    this.#changed('create', row, null);
    return presentRow(row);
  }

  /** Deletes a container (admin side door), e.g. to simulate one vanishing. */
  delete(uuid: string): void {
    const row = this.#containers.delete(uuid);
    if (row) this.#changed('delete', null, row);
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
    return presentRow(row);
  }

  /** `POST containers/{uuid}/lock` with its exact preconditions. */
  lock(uuid: string, caller: TokenRecord): LockResult {
    const row = this.#mustGet(uuid);
    checkLock(row);
    this.update(uuid, { state: 'Locked' }, caller);
    return lockResult(row);
  }

  /** `POST containers/{uuid}/unlock` with its exact preconditions. */
  unlock(uuid: string, caller: TokenRecord): LockResult {
    const row = this.#mustGet(uuid);
    checkUnlock(row);
    this.update(uuid, { state: 'Queued' }, caller);
    return lockResult(row);
  }

  /**
   * `PUT containers/{uuid}`: applies `attrs` as `caller` if the API's rules
   * allow it (see {@link planUpdate}), or throws the API's error.
   */
  update(uuid: string, rawAttrs: Record<string, unknown>, caller: TokenRecord, select?: unknown): Container {
    const row = this.#mustGet(uuid);
    const sel = resolveSelect(select);
    const { attrs, from: old, to: next, lockCount, lockedBy, maxAttemptsCancel } = planUpdate(row, rawAttrs, caller, this.maxDispatchAttempts);
    const stateChanging = next !== old;

    const before = this.#listeners.size > 0 ? { ...row } : undefined;
    const now = this.now();
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'locked_by_uuid' || k === 'auth_uuid') continue;
      (row as unknown as Record<string, unknown>)[k] = clone(v);
    }
    row.state = next;
    row.lock_count = lockCount;
    row.locked_by_uuid = lockedBy;
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
      row.runtime_token = null;
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
    return presentRow(row, sel);
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

  #mustGet(uuid: string): ContainerRow {
    const row = this.#containers.get(uuid);
    if (!row) throw new ApiError(404, 'Path not found');
    return row;
  }

  #nextEtag(): string {
    return (++this.#etag).toString(36).padStart(8, '0') + random36(17);
  }

  #changed(type: 'create' | 'update' | 'delete', row: ContainerRow | null, before: ContainerRow | null): void {
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

/** What `lock` and `unlock` answer. */
function lockResult(row: ContainerRow): LockResult {
  return { uuid: row.uuid, state: row.state, priority: row.priority, auth_uuid: row.auth_uuid ?? null, locked_by_uuid: row.locked_by_uuid };
}
