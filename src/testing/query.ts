/**
 * List queries for FakeArvados: filters, order and select with the Rails API
 * server's semantics (record_filters.rb, load_param.rb), including its quirks:
 * a numeric string operand on an integer column compares numerically,
 * `!=` with a string operand matches NULL, invalid order entries are ignored,
 * and `modified_at desc, uuid desc` are appended to every order.
 *
 * @module
 */
import type { Container } from '../types.js';
import { ApiError } from './errors.js';

type ColumnType = 'string' | 'integer' | 'datetime' | 'boolean';

/** Filterable columns of the containers table and their types. */
const COLUMNS: Record<string, ColumnType> = {
  uuid: 'string',
  owner_uuid: 'string',
  modified_by_user_uuid: 'string',
  state: 'string',
  locked_by_uuid: 'string',
  auth_uuid: 'string',
  container_image: 'string',
  cwd: 'string',
  output_path: 'string',
  log: 'string',
  output: 'string',
  runtime_user_uuid: 'string',
  priority: 'integer',
  lock_count: 'integer',
  exit_code: 'integer',
  created_at: 'datetime',
  modified_at: 'datetime',
  started_at: 'datetime',
  finished_at: 'datetime',
  interactive_session_started: 'boolean',
  service: 'boolean',
};

/** Every attribute the API returns for a container (what `select` may name). */
export const CONTAINER_ATTRIBUTES = [
  'kind', 'etag', 'uuid', 'owner_uuid', 'created_at', 'modified_by_user_uuid', 'modified_at',
  'state', 'started_at', 'finished_at', 'log', 'environment', 'cwd', 'command', 'output_path',
  'output_glob', 'mounts', 'runtime_constraints', 'output', 'container_image', 'progress',
  'priority', 'exit_code', 'auth_uuid', 'locked_by_uuid', 'scheduling_parameters',
  'runtime_status', 'runtime_user_uuid', 'runtime_auth_scopes', 'lock_count',
  'gateway_address', 'interactive_session_started', 'output_storage_classes',
  'output_properties', 'cost', 'subrequests_cost', 'service', 'published_ports',
] as const;
const ATTRIBUTE_SET = new Set<string>(CONTAINER_ATTRIBUTES);

/** A compiled filter: true when a row matches. */
export type Predicate = (row: Container) => boolean;

const TRUE_STRINGS = new Set(['1', 't', 'true', 'y', 'yes']);
const FALSE_STRINGS = new Set(['0', 'f', 'false', 'n', 'no']);
const KIND_INFIX: Record<string, string> = {
  'arvados#container': 'dz642',
  'arvados#containerRequest': 'xvhdp',
  'arvados#apiClientAuthorization': 'gj3su',
  'arvados#user': 'tpzed',
  'arvados#collection': '4zz18',
  'arvados#group': 'j7d0g',
  'arvados#log': '57u5n',
};

const rubyClass = (v: unknown): string =>
  v === null ? 'NilClass' : Array.isArray(v) ? 'Array' : typeof v === 'string' ? 'String'
    : typeof v === 'boolean' ? (v ? 'TrueClass' : 'FalseClass')
      : typeof v === 'number' ? (Number.isInteger(v) ? 'Integer' : 'Float') : 'Hash';

/** Canonical API time string (9 fractional digits, `Z`), so times compare as strings. */
function canonicalTime(value: string): string | undefined {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) return undefined;
  const frac = /\.(\d+)/.exec(value)?.[1] ?? '';
  const iso = new Date(ms).toISOString().slice(0, 19);
  return `${iso}.${frac.padEnd(9, '0').slice(0, 9)}Z`;
}

function likeRegex(pattern: string, insensitive: boolean): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) re += pattern[++i].replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (c === '%') re += '[\\s\\S]*';
    else if (c === '_') re += '[\\s\\S]';
    else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, insensitive ? 'i' : '');
}

function compare(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Coerces an operand for a column of type `type`, or throws a 422 like Rails. */
function coerce(attr: string, type: ColumnType, op: string, v: unknown): string | number | boolean {
  switch (type) {
    case 'integer':
      if (typeof v === 'number' && Number.isInteger(v)) return v;
      // Postgres casts a string operand, so `["priority", ">", "0"]` works.
      if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) return Number(v);
      if (typeof v === 'string') throw new ApiError(422, `PG::InvalidTextRepresentation: ERROR:  invalid input syntax for type bigint: "${v}"`);
      throw new ApiError(422, `Invalid operand '${String(v)}' for integer attribute '${attr}'`);
    case 'datetime': {
      const t = typeof v === 'string' ? canonicalTime(v) : undefined;
      if (t === undefined) throw new ApiError(422, `Invalid operand '${String(v)}' for datetime attribute '${attr}'`);
      return t;
    }
    case 'boolean': {
      if (typeof v === 'boolean') return v;
      const s = String(v).toLowerCase();
      if (TRUE_STRINGS.has(s)) return true;
      if (FALSE_STRINGS.has(s)) return false;
      throw new ApiError(422, `Invalid operand '${String(v)}' for boolean attribute '${attr}' (for operator '${op}')`);
    }
    default:
      if (typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'boolean') return String(v);
      throw new ApiError(422, `Invalid operand type '${rubyClass(v)}' for '${op}' operator in filters`);
  }
}

function compileOne(attr: string, op: string, operand: unknown): Predicate {
  const type = COLUMNS[attr];
  if (!type) throw new ApiError(422, `#<ArgumentError: Invalid attribute '${attr}' in filter>`);
  const get = (row: Container): unknown => (row as unknown as Record<string, unknown>)[attr] ?? null;

  if (op === 'is_a') {
    const kinds = Array.isArray(operand) ? operand : [operand];
    const infixes = kinds.map((k) => KIND_INFIX[String(k)]).filter(Boolean);
    return (row) => {
      const v = get(row);
      return typeof v === 'string' && infixes.includes(v.slice(6, 11));
    };
  }
  const orderingOp = /[<=>]/.test(op) || op === 'in' || op === 'not in';
  if (type !== 'string' && !orderingOp) {
    throw new ApiError(422, `#<ArgumentError: Invalid attribute '${attr}' for operator '${op}' in filter>`);
  }

  if (operand === null) {
    if (op === '=') return (row) => get(row) === null;
    if (op === '!=') return (row) => get(row) !== null;
    throw new ApiError(422, `#<ArgumentError: Invalid operand type 'NilClass' for '${op}' operator in filters>`);
  }

  if (op === 'in' || op === 'not in') {
    if (!Array.isArray(operand)) {
      throw new ApiError(422, `#<ArgumentError: Invalid operand type '${rubyClass(operand)}' for '${op}' operator in filters>`);
    }
    const hasNull = operand.includes(null);
    const values = new Set<string | number | boolean>();
    for (const e of operand) {
      if (e === null) continue;
      if (type === 'integer' && !(typeof e === 'number' && Number.isInteger(e))) {
        throw new ApiError(422, `#<ArgumentError: Invalid element '${String(e)}' in array for integer attribute '${attr}'>`);
      }
      values.add(coerce(attr, type, op, e));
    }
    if (op === 'in') {
      return (row) => {
        const v = get(row);
        return v === null ? hasNull : values.has(v as string | number | boolean);
      };
    }
    // NOT IN matches NULL rows unless the list itself holds a null.
    return (row) => {
      const v = get(row);
      return v === null ? !hasNull : !values.has(v as string | number | boolean);
    };
  }

  if (op === 'like' || op === 'ilike') {
    if (typeof operand !== 'string') throw new ApiError(422, `#<ArgumentError: Invalid operand type '${rubyClass(operand)}' for '${op}' operator in filters>`);
    const re = likeRegex(operand, op === 'ilike');
    return (row) => {
      const v = get(row);
      return typeof v === 'string' && re.test(v);
    };
  }

  if (type === 'boolean' && op !== '=' && op !== '!=') {
    throw new ApiError(422, `#<ArgumentError: Invalid operator '${op}' for boolean attribute '${attr}'>`);
  }
  const target = coerce(attr, type, op, operand);
  const stringOperand = typeof operand === 'string';
  switch (op) {
    case '=':
      return (row) => get(row) === target;
    case '!=':
      // SQL: `col <> 'x' OR col IS NULL` for string operands only.
      return (row) => {
        const v = get(row);
        return v === null ? stringOperand && type === 'string' : v !== target;
      };
    case '<':
    case '<=':
    case '>':
    case '>=': {
      const t = target as string | number;
      return (row) => {
        const v = get(row);
        if (v === null || typeof v === 'boolean') return false;
        const c = compare(v as string | number, t);
        return op === '<' ? c < 0 : op === '<=' ? c <= 0 : op === '>' ? c > 0 : c >= 0;
      };
    }
    default:
      throw new ApiError(422, `#<ArgumentError: Invalid operator '${op}'>`);
  }
}

const EXPRESSION = /^\(\s*(\w+)\s*(=|<|<=|>|>=)\s*(\w+)\s*\)$/;

/** Compiles a `filters` parameter into one predicate (all filters ANDed). */
export function compileFilters(filters: unknown): Predicate {
  if (filters === undefined || filters === null || filters === '') return () => true;
  if (!Array.isArray(filters)) throw new ApiError(422, 'Could not parse "filters" param as an array');
  const preds: Predicate[] = [];
  for (const f of filters) {
    if (typeof f === 'string') {
      const m = EXPRESSION.exec(f);
      if (!m || COLUMNS[m[1]] !== 'integer' || COLUMNS[m[3]] !== 'integer') {
        throw new ApiError(422, `#<ArgumentError: Invalid expression filter '${f}'>`);
      }
      const [, a, op, b] = m;
      preds.push((row) => {
        const r = row as unknown as Record<string, number | null>;
        const x = r[a];
        const y = r[b];
        if (x == null || y == null) return false;
        return op === '=' ? x === y : op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y;
      });
      continue;
    }
    if (!Array.isArray(f) || f.length !== 3) {
      throw new ApiError(422, `#<ArgumentError: Invalid element in filters array: ${JSON.stringify(f)}>`);
    }
    const [attrs, rawOp, operand] = f as [unknown, unknown, unknown];
    if (typeof rawOp !== 'string') throw new ApiError(422, `#<ArgumentError: Invalid operator '${String(rawOp)}'>`);
    let op = rawOp.toLowerCase();
    if (op === '<>') op = '!=';
    if (op === '@@') throw new ApiError(422, '#<ArgumentError: Full text search operator is no longer supported>');
    if (!['=', '!=', '<', '<=', '>', '>=', 'like', 'ilike', 'in', 'not in', 'is_a'].includes(op)) {
      throw new ApiError(422, `#<ArgumentError: Invalid operator '${rawOp}'>`);
    }
    const names = attrs === 'any' ? Object.keys(COLUMNS).filter((k) => COLUMNS[k] === 'string') : Array.isArray(attrs) ? attrs : [attrs];
    const alternatives = names.map((a) => compileOne(String(a), op, operand));
    preds.push(alternatives.length === 1 ? alternatives[0] : (row) => alternatives.some((p) => p(row)));
  }
  if (preds.length === 1) return preds[0];
  return (row) => preds.every((p) => p(row));
}

/** One resolved order term. */
export interface OrderTerm {
  column: string;
  desc: boolean;
}

/**
 * Resolves `order` like Rails: accepts an array, a JSON array string or a
 * comma-separated string; ignores invalid entries; appends
 * `modified_at desc, uuid desc`; drops repeated columns; stops after `uuid`.
 */
export function resolveOrder(order: unknown, select?: string[]): OrderTerm[] {
  let entries: unknown[] = [];
  if (Array.isArray(order)) entries = order;
  else if (typeof order === 'string' && order.trim() !== '') entries = order.split(',');
  const terms: OrderTerm[] = [];
  const seen = new Set<string>();
  const add = (column: string, desc: boolean): boolean => {
    if (seen.has(column)) return false;
    if (select && !select.includes(column)) return false;
    seen.add(column);
    terms.push({ column, desc });
    return column === 'uuid';
  };
  for (const e of [...entries, 'modified_at desc', 'uuid desc']) {
    if (typeof e !== 'string') continue;
    const m = /^\s*(?:containers\.)?([a-z_]+)(?:\s+(asc|desc))?\s*$/i.exec(e);
    if (!m || !(m[1] in COLUMNS || m[1] === 'progress' || m[1] === 'cost')) continue;
    if (add(m[1], (m[2] ?? 'asc').toLowerCase() === 'desc')) break;
  }
  return terms;
}

/** A comparator for rows following `terms`; NULLs sort last ascending and first descending, as in Postgres. */
export function comparator(terms: OrderTerm[]): (a: Container, b: Container) => number {
  return (a, b) => {
    for (const { column, desc } of terms) {
      const x = (a as unknown as Record<string, unknown>)[column] ?? null;
      const y = (b as unknown as Record<string, unknown>)[column] ?? null;
      if (x === y) continue;
      let c: number;
      if (x === null) c = 1;
      else if (y === null) c = -1;
      else c = compare(x as string | number, y as string | number);
      if (c !== 0) return desc ? -c : c;
    }
    return 0;
  };
}

/**
 * Resolves a `select` list as Rails does (load_param.rb, select_for_klass):
 * `null`/`false` mean no select; `modified_by_client_uuid` is dropped
 * silently (no longer offered, but old clients still ask); a
 * `containers.<attr>` name means `<attr>`; any other unknown name is a 422.
 */
export function resolveSelect(select: unknown): string[] | undefined {
  if (select === undefined || select === null || select === '' || select === false) return undefined;
  if (!Array.isArray(select)) throw new ApiError(422, '#<ArgumentError: Could not parse "select" param as an array>');
  const out: string[] = [];
  for (const s of select) {
    const name = typeof s === 'string' && s.startsWith('containers.') ? s.slice('containers.'.length) : s;
    if (name === 'modified_by_client_uuid') continue;
    if (typeof name !== 'string' || !ATTRIBUTE_SET.has(name)) {
      throw new ApiError(422, `#<ArgumentError: Invalid attribute '${String(s)}' of Container in select parameter>`);
    }
    if (!out.includes(name)) out.push(name);
  }
  return out;
}

/** A lower bound for the `uuid` column when the filters hold `uuid > x` or `uuid >= x` (for the index fast path). */
export function uuidLowerBound(filters: unknown): { value: string; inclusive: boolean } | undefined {
  if (!Array.isArray(filters)) return undefined;
  let best: { value: string; inclusive: boolean } | undefined;
  for (const f of filters) {
    if (Array.isArray(f) && f[0] === 'uuid' && (f[1] === '>' || f[1] === '>=') && typeof f[2] === 'string') {
      if (!best || f[2] > best.value) best = { value: f[2], inclusive: f[1] === '>=' };
    }
  }
  return best;
}
