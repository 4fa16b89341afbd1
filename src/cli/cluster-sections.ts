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
import { z } from 'zod';
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

const size = z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  try {
    return parseSize(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: describeError(err) });
    return z.NEVER;
  }
});
const count = z.number().int().nonnegative();
const version = z.union([z.string(), z.number()]).transform(String);

const gpu = z
  .object({
    stack: z.string().optional(),
    devicecount: count.optional(),
    hardwaretarget: version.optional(),
    driverversion: version.optional(),
    vram: size.optional(),
  })
  .loose();
const cuda = z.object({ devicecount: count.optional(), hardwarecapability: version.optional(), driverversion: version.optional() }).loose();

const instanceType = z
  .object({
    vcpus: count.optional(),
    ram: size.optional(),
    scratch: size.optional(),
    includedscratch: size.optional(),
    addedscratch: size.optional(),
    price: z.number().nonnegative().optional(),
    preemptible: z.boolean().optional(),
    gpu: gpu.optional(),
    cuda: cuda.optional(),
  })
  .loose();

const connection = z
  .object({
    host: z.string().optional(),
    // "" (config.default.yml's value) means the default port.
    port: z
      .union([z.string().regex(/^\d*$/, 'not a port number'), z.number().int().min(1).max(65535)])
      .transform((v) => (v === '' ? undefined : Number(v)))
      .optional(),
    user: z.string().optional(),
    password: z.string().optional(),
    dbname: z.string().optional(),
    sslmode: z.enum(['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']).optional(),
  })
  .loose();

function typeFrom(name: string, t: z.infer<typeof instanceType>): InstanceType {
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

function parse<T>(schema: z.ZodType<T>, value: unknown, path: string, key: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new UsageError(`${path}: ${[key, ...issue.path].join('.')}: ${issue.message}`);
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
    rules.maximumPriceFactor = parse(z.number().nonnegative(), containers.maximumpricefactor, path, `${prefix}.Containers.MaximumPriceFactor`);
  }

  let supervisorFraction: number | undefined;
  const cloudVMs = isMap(containers.cloudvms) ? containers.cloudvms : {};
  if (cloudVMs.supervisorfraction !== undefined && cloudVMs.supervisorfraction !== null) {
    supervisorFraction = parse(z.number().min(0).max(1), cloudVMs.supervisorfraction, path, `${prefix}.Containers.CloudVMs.SupervisorFraction`);
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
