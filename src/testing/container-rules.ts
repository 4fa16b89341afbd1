/**
 * The API server's rules for changing a container
 * (services/api/app/models/container.rb): the state machine, lock and
 * unlock preconditions, `lock_count` and `MaxDispatchAttempts`, which
 * attributes each state lets whom change, and the other validations. They
 * decide what an update does, or which error the API answers; the store
 * then applies the decision.
 *
 * @module
 */
import type { ContainerState } from '../types.js';
import type { ContainerRow } from './container-row.js';
import { ApiError } from './errors.js';
import { CONTAINER_ATTRIBUTES } from './query.js';
import type { TokenRecord } from './tokens.js';

const TRANSITIONS: Record<ContainerState, ContainerState[]> = {
  Queued: ['Locked', 'Cancelled'],
  Locked: ['Queued', 'Running', 'Cancelled'],
  Running: ['Complete', 'Cancelled'],
  Complete: ['Cancelled'],
  Cancelled: [],
};

/** Every container state, in lifecycle order. */
export const CONTAINER_STATES = Object.keys(TRANSITIONS) as readonly ContainerState[];
const STATES = new Set<string>(CONTAINER_STATES);

/** Attributes a create or an update may name (anything else is an unknown attribute). */
export const WRITABLE_ATTRS: ReadonlySet<string> = new Set<string>([...CONTAINER_ATTRIBUTES, 'secret_mounts', 'runtime_token']);

const PROGRESS_ATTRS = ['progress', 'runtime_status', 'subrequests_cost', 'cost', 'log', 'output', 'output_properties', 'exit_code'];
// Keys the API ignores in an update body.
const IGNORED_ATTRS = new Set(['kind', 'etag', 'href', 'created_at', 'modified_by_client_uuid', 'modified_by_user_uuid', 'modified_at']);
const STRING_STATUS_KEYS = ['error', 'errorDetail', 'warning', 'warningDetail', 'activity', 'preemptionNotice'];

/** The API's error for an attribute a container does not have. */
export function unknownAttribute(name: string): ApiError {
  return new ApiError(422, `#<ActiveModel::UnknownAttributeError: unknown attribute '${name}' for Container.>`);
}

/** True when `v` is one of {@link CONTAINER_STATES}. */
export function isContainerState(v: unknown): v is ContainerState {
  return typeof v === 'string' && STATES.has(v);
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

/** `lock`'s precondition: only a Queued container can be locked. */
export function checkLock(row: ContainerRow): void {
  if (row.state !== 'Queued') throw new ApiError(422, `#<ArvadosModel::LockFailedError: cannot lock when ${row.state}>`);
}

/** `unlock`'s precondition: only a Locked container can be unlocked. */
export function checkUnlock(row: ContainerRow): void {
  if (row.state !== 'Locked') {
    throw new ApiError(422, `#<ArvadosModel::InvalidStateTransitionError: cannot unlock when ${row.state}>`);
  }
}

/** What an allowed update does, as {@link planUpdate} decides it. */
export interface UpdatePlan {
  /** The attributes to set, ignored keys and `uuid` left out (`locked_by_uuid` and `auth_uuid` are the store's to set). */
  attrs: Record<string, unknown>;
  from: ContainerState;
  to: ContainerState;
  /** `lock_count` after the update. */
  lockCount: number;
  /** `locked_by_uuid` after the update. */
  lockedBy: string | null;
  /** An unlock past `MaxDispatchAttempts`, turned into a cancel. */
  maxAttemptsCancel: boolean;
}

/**
 * Checks `PUT containers/{uuid}` with `rawAttrs` as `caller` against
 * container.rb's callbacks and validations: the plan of what it changes, or
 * the API's error thrown.
 */
export function planUpdate(row: ContainerRow, rawAttrs: Record<string, unknown>, caller: TokenRecord, maxDispatchAttempts: number): UpdatePlan {
  const uuid = row.uuid;
  const attrs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rawAttrs)) {
    if (IGNORED_ATTRS.has(k)) continue;
    if (!WRITABLE_ATTRS.has(k)) throw unknownAttribute(k);
    attrs[k] = v;
  }
  if (attrs.uuid !== undefined && attrs.uuid !== uuid) throw new ApiError(422, 'Uuid cannot be changed');
  delete attrs.uuid;

  const old = row.state;
  let next: ContainerState = old;
  if (attrs.state !== undefined) {
    if (!isContainerState(attrs.state)) {
      throw new ApiError(422, `State is not included in the list`);
    }
    next = attrs.state;
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
    if (lockCount >= maxDispatchAttempts) {
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
  return { attrs, from: old, to: next, lockCount, lockedBy: expectedLock, maxAttemptsCancel };
}
