/**
 * The record shapes the API documents, as runtime checks. Every answer the
 * client returns has passed one of these where it entered, so nothing past
 * the client has to wonder whether a `uuid` is a string or a list item is an
 * object. Shapes follow the API server's templates (Rails `api_accessible`):
 * nullable where Rails sends `null`, optional where a field may be left out
 * (`select`, older clusters). Fields of full records that this version does
 * not know are kept, so a newer API server does not break an older client;
 * partial answers (lock results, selected fields) keep only what was checked.
 *
 * valibot was chosen over zod by `bench/schemas.mjs` (see bench/results.md,
 * "Schema library"): about a quarter of the install size and a fifth of the
 * import time, for validation CPU per page within ~15% of zod's.
 *
 * @module
 */
import * as v from 'valibot';
import type {
  ApiClientAuthorization,
  Container,
  DiscoveryDocument,
  LockResult,
  LogRecord,
} from '../types.js';

const CONTAINER_UUID = /^[0-9a-z]{5}-dz642-[0-9a-z]{15}$/;
const ANY_UUID = /^[0-9a-z]{5}-[0-9a-z]{5}-[0-9a-z]{15}$/;
const TOKEN_UUID = /^[0-9a-z]{5}-gj3su-[0-9a-z]{15}$/;

const containerUuid = v.pipe(v.string(), v.regex(CONTAINER_UUID));
const anyUuid = v.pipe(v.string(), v.regex(ANY_UUID));
const state = v.picklist(['Queued', 'Locked', 'Running', 'Complete', 'Cancelled'] as const);
// Priorities above 2^53 arrive rounded, but still as integers: Number.isInteger
// (unlike a "safe integer" check) accepts them.
const priority = v.pipe(v.number(), v.minValue(0), v.integer());
const int = v.pipe(v.number(), v.integer());
// Resource sizes: a record asking for 0.5 or -1 vCPUs, or a fractional or
// negative amount of RAM, is a bad answer (the API server only stores
// positive integers), never a reason to act on the container.
const count = v.pipe(v.number(), v.integer(), v.minValue(0));
const atLeastOne = v.pipe(v.number(), v.integer(), v.minValue(1));
const size = v.pipe(v.number(), v.minValue(0));
const strings = v.array(v.string());
const anyRecord = v.record(v.string(), v.unknown());
const opt = <S extends v.GenericSchema>(s: S) => v.optional(s);
const nullable = <S extends v.GenericSchema>(s: S) => v.optional(v.nullable(s));

/** Every documented container field. */
export const containerEntries = {
  uuid: containerUuid,
  state,
  priority,
  locked_by_uuid: v.nullable(anyUuid),
  auth_uuid: nullable(anyUuid),
  lock_count: opt(int),
  runtime_constraints: opt(
    v.looseObject({
      API: opt(v.boolean()),
      ram: opt(count),
      vcpus: opt(atLeastOne),
      keep_cache_ram: opt(count),
      keep_cache_disk: opt(count),
      gpu: opt(
        v.looseObject({
          device_count: count,
          driver_version: opt(v.string()),
          hardware_target: opt(strings),
          stack: opt(v.string()),
          vram: opt(size),
        }),
      ),
      cuda: opt(v.looseObject({ device_count: count, driver_version: opt(v.string()), hardware_capability: opt(v.string()) })),
    }),
  ),
  scheduling_parameters: opt(
    v.looseObject({
      partitions: opt(strings),
      preemptible: opt(v.boolean()),
      max_run_time: opt(v.number()),
      supervisor: opt(v.boolean()),
    }),
  ),
  command: opt(strings),
  container_image: opt(v.string()),
  mounts: opt(anyRecord),
  kind: opt(v.string()),
  etag: opt(v.string()),
  owner_uuid: opt(v.string()),
  created_at: opt(v.string()),
  modified_at: opt(v.string()),
  modified_by_user_uuid: nullable(v.string()),
  cwd: opt(v.string()),
  environment: opt(v.record(v.string(), v.string())),
  output_path: opt(v.string()),
  output_glob: opt(strings),
  runtime_status: opt(anyRecord),
  runtime_user_uuid: nullable(v.string()),
  runtime_auth_scopes: opt(strings),
  started_at: nullable(v.string()),
  finished_at: nullable(v.string()),
  exit_code: nullable(int),
  log: nullable(v.string()),
  output: nullable(v.string()),
  progress: nullable(v.number()),
  gateway_address: nullable(v.string()),
  interactive_session_started: opt(v.boolean()),
  output_storage_classes: opt(strings),
  output_properties: opt(anyRecord),
  cost: opt(v.number()),
  subrequests_cost: opt(v.number()),
  service: opt(v.boolean()),
  published_ports: opt(anyRecord),
} satisfies { [K in keyof Container]-?: v.GenericSchema };

/** A full container record (get, update, list without `select`). */
export const containerSchema = v.looseObject(containerEntries);

/**
 * The five fields of a lock or unlock answer. Anything else in it is left
 * out: a caller merging the answer into a full record must not pick up
 * fields nobody checked.
 */
export const lockResultSchema = v.object({
  uuid: containerUuid,
  state,
  priority,
  auth_uuid: v.nullable(anyUuid),
  locked_by_uuid: v.nullable(anyUuid),
});

/**
 * `api_client_authorizations/current`. The dispatcher filters on `uuid`, so
 * it must be a token's UUID (`…-gj3su-…`, what `locked_by_uuid` holds):
 * `{"uuid": null}` would filter on `locked_by_uuid = null`, i.e. every
 * unlocked container, and a user's or any other object's uuid would make
 * every container this token locks look locked by another token, so the
 * dispatcher would stop each one right after starting it.
 */
export const authorizationSchema = v.looseObject({
  uuid: v.pipe(v.string(), v.regex(TOKEN_UUID)),
  kind: opt(v.string()),
  owner_uuid: opt(v.string()),
  api_token: opt(v.string()),
  scopes: opt(strings),
  expires_at: nullable(v.string()),
  created_at: nullable(v.string()),
});

/** A created `logs` record. */
export const logRecordSchema = v.looseObject({
  uuid: anyUuid,
  object_uuid: v.string(),
  event_type: v.string(),
  properties: anyRecord,
  created_at: opt(v.string()),
});

/** The list envelope; its items are checked one by one (see `checkItems`). */
export const listEnvelopeSchema = v.looseObject({
  kind: opt(v.string()),
  etag: opt(v.string()),
  self_link: opt(v.string()),
  offset: opt(v.pipe(v.number(), v.integer(), v.minValue(0))),
  limit: opt(v.pipe(v.number(), v.integer(), v.minValue(0))),
  items: v.array(v.unknown()),
  items_available: opt(v.pipe(v.number(), v.integer(), v.minValue(0))),
});

/** The discovery document's keys that clients read. */
export const discoverySchema = v.looseObject({
  basePath: v.pipe(v.string(), v.minLength(1)),
  websocketUrl: opt(v.pipe(v.string(), v.regex(/^(wss?|https?):\/\/\S+$/))),
  uuidPrefix: opt(v.string()),
  maxItemsPerResponse: opt(v.pipe(v.number(), v.integer(), v.minValue(1))),
  revision: opt(v.string()),
});

// Compile-time proof that what the schemas let through has the public types.
type Out<S extends v.GenericSchema> = v.InferOutput<S>;
const _types: [
  (x: Out<typeof containerSchema>) => Container,
  (x: Out<typeof lockResultSchema>) => LockResult,
  (x: Out<typeof authorizationSchema>) => ApiClientAuthorization,
  (x: Out<typeof logRecordSchema>) => LogRecord,
  (x: Out<typeof discoverySchema>) => DiscoveryDocument,
] = [(x) => x, (x) => x, (x) => x, (x) => x, (x) => x];
void _types;

/** A checker for one shape: the value typed as `T`, or a short reason. */
export type Check<T> = (value: unknown) => { ok: true; value: T } | { ok: false; reason: string };

/** A {@link Check} from a schema. */
export function checker<T>(schema: v.GenericSchema<unknown, T>): Check<T> {
  return (value) => {
    const r = v.safeParse(schema, value);
    if (r.success) return { ok: true, value: r.output };
    return { ok: false, reason: describeIssue(r.issues[0]) };
  };
}

/**
 * The first issue in a few words, e.g. `uuid: Invalid format`. The received
 * value is never quoted: it came from the server and may hold anything.
 * Nor are map keys that do not look like field names (`mounts`,
 * `environment` keys are the server's too): a key holding a newline would
 * forge log lines, and one of 5,000 characters would flood them.
 */
function describeIssue(issue: v.BaseIssue<unknown>): string {
  const name = (key: unknown): string => (typeof key === 'number' || (typeof key === 'string' && /^[A-Za-z0-9_-]{1,40}$/.test(key)) ? String(key) : '<key>');
  const path = issue.path?.map((p) => name(p.key)).join('.') ?? '';
  const input: unknown = issue.input;
  const got = input === null ? 'null' : Array.isArray(input) ? 'array' : typeof input;
  const what = input === undefined ? 'missing' : `expected ${issue.expected ?? issue.kind}, got ${issue.type === got ? `another ${got}` : got}`;
  return path ? `${path}: ${what}` : what;
}

const selectCheckers = new Map<string, Check<Container>>();

/**
 * The check for list items of a query that selected `fields` (always with
 * `uuid`); the full record check when nothing was selected. One per distinct
 * field set, built once.
 */
export function containerCheck(fields?: readonly string[]): Check<Container> {
  if (!fields) return checkContainer;
  const key = [...new Set(fields)].sort().join(',');
  let check = selectCheckers.get(key);
  if (!check) {
    const keys = key.split(',').filter((k): k is keyof typeof containerEntries => k in containerEntries);
    const picked: Record<string, v.GenericSchema> = { kind: containerEntries.kind };
    for (const k of keys) picked[k] = containerEntries[k];
    // Fields that were not selected are left out rather than passed on
    // unchecked. Typed as Container for the helper's sake; callers narrow it
    // to the selected Pick.
    check = checker(v.object(picked) as unknown as v.GenericSchema<unknown, Container>);
    selectCheckers.set(key, check);
  }
  return check;
}

/** Full container records. */
export const checkContainer: Check<Container> = checker(containerSchema);
/** Lock and unlock answers. */
export const checkLockResult: Check<LockResult> = checker(lockResultSchema);
/** The token's own record. */
export const checkAuthorization: Check<ApiClientAuthorization> = checker(authorizationSchema);
/** Created `logs` records. */
export const checkLogRecord: Check<LogRecord> = checker(logRecordSchema);
/** The discovery document. */
export const checkDiscovery: Check<DiscoveryDocument> = checker(discoverySchema);
/** List envelopes. */
export const checkListEnvelope = checker(listEnvelopeSchema);
