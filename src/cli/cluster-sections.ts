/**
 * The structured sections of the cluster configuration that are not a flag
 * each: `InstanceTypes` (with `Containers.LocalKeepBlobBuffersPerVCPU` and
 * `Containers.MaximumPriceFactor`, which the choice depends on),
 * `PostgreSQL.Connection` (the cluster lock) and
 * `Containers.CloudVMs.SupervisorFraction`. Read from the same file as
 * `config.ts` reads its keys, with the same case-insensitive key matching;
 * an ill-typed value is a usage error naming the file and the key.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import * as v from 'valibot';
import type { InstanceType, InstanceTypeRules } from '../runners/instance-types.js';
import { describeError } from '../util/errors.js';
import { UsageError } from './errors.js';
import { parseSize } from './size.js';

/** Where the cluster database is: `PostgreSQL.Connection`, as libpq names its parameters. */
export interface PostgresConnection {
  readonly host?: string;
  readonly port?: number;
  readonly user?: string;
  readonly password?: string;
  readonly dbname?: string;
  /** libpq's `sslmode`: `disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`. */
  readonly sslmode?: string;
}

/** The sections {@link readClusterSections} reads. */
export interface ClusterSections {
  /** `InstanceTypes`, sorted by name (empty when absent). */
  readonly instanceTypes: readonly InstanceType[];
  /** The choice's settings besides `ReserveExtraRAM` (which is a flag). */
  readonly instanceTypeRules: Omit<InstanceTypeRules, 'reserveExtraRam'>;
  /** `PostgreSQL.Connection`, when it names a database. */
  readonly postgres?: PostgresConnection;
  /** `Containers.CloudVMs.SupervisorFraction`, when set. */
  readonly supervisorFraction?: number;
  /** `Containers.LSF.BsubSudoUser` as written, even if empty (which turns sudo off); undefined when absent. */
  readonly bsubSudoUser?: string;
}

type Node = Record<string, unknown>;

function isMap(v: unknown): v is Node {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A copy of `v` with every mapping key lowercased, as Go's JSON decoding matches them. */
function lowerKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(lowerKeys);
  if (!isMap(v)) return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k.toLowerCase(), lowerKeys(x)]));
}

const size = v.pipe(
  v.union([v.pipe(v.number(), v.integer('expected a whole number of bytes'), v.minValue(0, 'expected a number of bytes >= 0')), v.string()], 'expected a size (bytes, or e.g. "256MiB")'),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const x = dataset.value;
    if (typeof x === 'number') return x;
    try {
      return parseSize(x);
    } catch (err) {
      addIssue({ message: describeError(err) });
      return NEVER;
    }
  }),
);
const count = v.pipe(v.number('expected a number'), v.integer('expected a whole number'), v.minValue(0, 'expected a number >= 0'));
const version = v.pipe(v.union([v.string(), v.number()], 'expected a string or a number'), v.transform(String));

const gpu = v.looseObject({
  stack: v.optional(v.string()),
  devicecount: v.optional(count),
  hardwaretarget: v.optional(version),
  driverversion: v.optional(version),
  vram: v.optional(size),
});
const cuda = v.looseObject({ devicecount: v.optional(count), hardwarecapability: v.optional(version), driverversion: v.optional(version) });

const instanceType = v.looseObject({
  vcpus: v.optional(count),
  ram: v.optional(size),
  scratch: v.optional(size),
  includedscratch: v.optional(size),
  addedscratch: v.optional(size),
  price: v.optional(v.pipe(v.number('expected a number'), v.minValue(0, 'expected a number >= 0'))),
  preemptible: v.optional(v.boolean('expected true or false')),
  gpu: v.optional(gpu),
  cuda: v.optional(cuda),
});

const connection = v.looseObject({
  host: v.optional(v.string()),
  // "" (config.default.yml's value) means the default port.
  port: v.optional(
    v.pipe(
      v.union([v.pipe(v.string(), v.regex(/^\d*$/, 'not a port number')), v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535))], 'expected a port number'),
      v.transform((x) => (x === '' ? undefined : Number(x))),
    ),
  ),
  user: v.optional(v.string()),
  password: v.optional(v.string()),
  dbname: v.optional(v.string()),
  sslmode: v.optional(v.picklist(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'], 'expected one of disable, allow, prefer, require, verify-ca, verify-full')),
});

function typeFrom(name: string, t: v.InferOutput<typeof instanceType>): InstanceType {
  // Arvados fills Scratch from IncludedScratch + AddedScratch when it is not given.
  const scratch = t.scratch || (t.includedscratch ?? 0) + (t.addedscratch ?? 0);
  const g = t.gpu && (t.gpu.devicecount ?? 0) > 0 ? t.gpu : undefined;
  const c = !g && t.cuda && (t.cuda.devicecount ?? 0) > 0 ? t.cuda : undefined;
  return {
    name,
    vcpus: t.vcpus ?? 0,
    ram: t.ram ?? 0,
    scratch,
    price: t.price ?? 0,
    preemptible: t.preemptible ?? false,
    ...(g
      ? { gpu: { stack: g.stack ?? '', deviceCount: g.devicecount ?? 0, hardwareTarget: g.hardwaretarget ?? '', driverVersion: g.driverversion ?? '', vram: g.vram ?? 0 } }
      : c
        ? { gpu: { stack: 'cuda', deviceCount: c.devicecount ?? 0, hardwareTarget: c.hardwarecapability ?? '', driverVersion: c.driverversion ?? '', vram: 0 } }
        : {}),
  };
}

function parse<S extends v.GenericSchema>(schema: S, value: unknown, path: string, key: string): v.InferOutput<S> {
  const r = v.safeParse(schema, value);
  if (r.success) return r.output;
  const issue = r.issues[0];
  const sub = (issue.path ?? []).map((p) => String(p.key));
  throw new UsageError(`${path}: ${[key, ...sub].join('.')}: ${issue.message}`);
}

/**
 * Reads the sections of the one cluster in the config file at `path`.
 * The file has already been checked by `loadClusterConfig`.
 *
 * @throws {@link UsageError} naming the file and key of an ill-typed value.
 */
export function readClusterSections(path: string): ClusterSections {
  let doc: unknown;
  try {
    doc = lowerKeys(parseYaml(readFileSync(path, 'utf8')));
  } catch (err) {
    throw new UsageError(`${path}: ${describeError(err)}`);
  }
  const clusters = isMap(doc) && isMap(doc.clusters) ? doc.clusters : {};
  const [id] = Object.keys(clusters);
  const cluster = id !== undefined && isMap(clusters[id]) ? clusters[id] : {};
  const prefix = `Clusters.${id}`;
  const containers = isMap(cluster.containers) ? cluster.containers : {};

  const types: InstanceType[] = [];
  if (cluster.instancetypes !== undefined && cluster.instancetypes !== null) {
    if (!isMap(cluster.instancetypes)) throw new UsageError(`${path}: ${prefix}.InstanceTypes: expected a mapping`);
    // Names keep their case: they are what %I expands to. Re-read them from the unlowered keys.
    const raw = rawInstanceTypeNames(path);
    for (const [lower, value] of Object.entries(cluster.instancetypes)) {
      if (lower === 'sample') continue;
      const name = raw.get(lower) ?? lower;
      types.push(typeFrom(name, parse(instanceType, value ?? {}, path, `${prefix}.InstanceTypes.${name}`)));
    }
  }
  types.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const rules: { localKeepBlobBuffersPerVCPU?: number; maximumPriceFactor?: number } = {};
  if (containers.localkeepblobbufferspervcpu !== undefined) {
    rules.localKeepBlobBuffersPerVCPU = parse(count, containers.localkeepblobbufferspervcpu, path, `${prefix}.Containers.LocalKeepBlobBuffersPerVCPU`);
  }
  if (containers.maximumpricefactor !== undefined) {
    rules.maximumPriceFactor = parse(v.pipe(v.number('expected a number'), v.minValue(0, 'expected a number >= 0')), containers.maximumpricefactor, path, `${prefix}.Containers.MaximumPriceFactor`);
  }

  let supervisorFraction: number | undefined;
  const cloudVMs = isMap(containers.cloudvms) ? containers.cloudvms : {};
  if (cloudVMs.supervisorfraction !== undefined && cloudVMs.supervisorfraction !== null) {
    supervisorFraction = parse(v.pipe(v.number('expected a number'), v.minValue(0, 'expected a number from 0 to 1'), v.maxValue(1, 'expected a number from 0 to 1')), cloudVMs.supervisorfraction, path, `${prefix}.Containers.CloudVMs.SupervisorFraction`);
  }

  let postgres: PostgresConnection | undefined;
  const pg = isMap(cluster.postgresql) ? cluster.postgresql.connection : undefined;
  if (pg !== undefined && pg !== null) {
    const c = parse(connection, pg, path, `${prefix}.PostgreSQL.Connection`);
    // An empty Connection (the default config's) means "no database configured".
    if (c.host || c.dbname) postgres = { host: c.host, port: c.port, user: c.user, password: c.password, dbname: c.dbname, sslmode: c.sslmode };
  }

  const lsf = isMap(containers.lsf) ? containers.lsf : {};
  const bsubSudoUser = typeof lsf.bsubsudouser === 'string' ? lsf.bsubsudouser : undefined;

  return {
    instanceTypes: types,
    instanceTypeRules: rules,
    ...(postgres ? { postgres } : {}),
    ...(supervisorFraction !== undefined ? { supervisorFraction } : {}),
    ...(bsubSudoUser !== undefined ? { bsubSudoUser } : {}),
  };
}

/** Lowercased -> written instance type names. */
function rawInstanceTypeNames(path: string): Map<string, string> {
  const out = new Map<string, string>();
  const doc: unknown = parseYaml(readFileSync(path, 'utf8'));
  const clusters = isMap(doc) ? Object.entries(doc).find(([k]) => k.toLowerCase() === 'clusters')?.[1] : undefined;
  if (!isMap(clusters)) return out;
  const cluster = Object.values(clusters)[0];
  if (!isMap(cluster)) return out;
  const types = Object.entries(cluster).find(([k]) => k.toLowerCase() === 'instancetypes')?.[1];
  if (isMap(types)) for (const k of Object.keys(types)) out.set(k.toLowerCase(), k);
  return out;
}

/** The sections of the config `opts` read, or empty ones without a config. */
export function clusterSections(config: { readonly path: string } | undefined): ClusterSections {
  return config ? readClusterSections(config.path) : { instanceTypes: [], instanceTypeRules: {} };
}
