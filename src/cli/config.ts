/**
 * The Arvados cluster configuration (`/etc/arvados/config.yml`), read the
 * way the Go services read it, for the keys this program uses. Each key we
 * read maps to a command-line flag ({@link CONFIG_KEYS}); the value is
 * handed to the command as that flag's lower-precedence default, so one set
 * of checks covers both spellings.
 *
 * Like the Go loader (YAML turned into JSON, then decoded by encoding/json),
 * key names match case-insensitively. Keys elsewhere in the file are
 * ignored: a real config holds hundreds this program has no use for. In the
 * sections read whole (`Containers.SLURM`, `Containers.LSF`) an unknown key
 * is an error, because it is almost always a misspelt key we would
 * otherwise silently not apply.
 *
 * @module
 */
import { describeError } from '../util/errors.js';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readFileSync } from 'node:fs';
import type { ConfigSourceInfo } from '../server/version-metrics.js';
import { parse as parseYaml } from 'yaml';
import * as v from 'valibot';
import { BATCH_SYSTEMS } from '../runners/batch/registry.js';
import { parseDuration } from './duration.js';
import { UsageError } from './errors.js';
import { parseSize } from './size.js';

/** Where the Go services look when neither `-config` nor `$ARVADOS_CONFIG` is given. */
export const DEFAULT_CONFIG_PATH = '/etc/arvados/config.yml';

/** The value kinds of the keys we read. */
type Kind = 'string' | 'duration' | 'size' | 'integer' | 'boolean' | 'list' | 'env' | 'url' | 'internal-urls';

/** The pseudo-flag under which `ManagementToken` is kept (the flag is `--management-token-file`, a file holding it). */
export const MANAGEMENT_TOKEN = '(management token)';
/** Pseudo-flag of `Services.Controller.ExternalURL`, named after the variable that wins over it. */
export const API_HOST = '(ARVADOS_API_HOST)';
/** Pseudo-flag of `SystemRootToken`, named after the variable that wins over it. */
export const API_TOKEN = '(ARVADOS_API_TOKEN)';
/** Pseudo-flag of `TLS.Insecure`, named after the variable that wins over it. */
export const API_INSECURE = '(ARVADOS_API_HOST_INSECURE)';
/** Pseudo-flag of `TLS.Certificate`: the certificate file of `https://` InternalURLs. */
export const TLS_CERTIFICATE = '(TLS certificate)';
/** Pseudo-flag of `TLS.Key`: the key file of `https://` InternalURLs. */
export const TLS_KEY = '(TLS key)';

/** One config key we read. */
export interface ConfigKey {
  /** Path below `Clusters.<id>`, e.g. `Containers.MinRetryPeriod`. */
  key: string;
  /** The flag (without `--`) it sets, or how else it is used. */
  flag: string;
  kind: Kind;
  /** Commands that read it; undefined: all dispatching commands. */
  commands?: readonly string[];
  /** A credential: its value never appears in a message. */
  secret?: boolean;
}

/**
 * Every key read, and the flag it stands for. The README's mapping table is
 * this list. `flag` values in parentheses are not flags but the setting
 * named.
 */
export const CONFIG_KEYS: readonly ConfigKey[] = [
  { key: 'Services.Controller.ExternalURL', flag: API_HOST, kind: 'url' },
  { key: 'SystemRootToken', flag: API_TOKEN, kind: 'string', secret: true },
  { key: 'TLS.Insecure', flag: API_INSECURE, kind: 'boolean' },
  { key: 'ManagementToken', flag: MANAGEMENT_TOKEN, kind: 'string', secret: true },
  { key: 'TLS.Certificate', flag: TLS_CERTIFICATE, kind: 'string' },
  { key: 'TLS.Key', flag: TLS_KEY, kind: 'string' },
  { key: 'API.MaxItemsPerResponse', flag: 'batch-size', kind: 'integer' },
  { key: 'Containers.CloudVMs.PollInterval', flag: 'poll-interval', kind: 'duration' },
  { key: 'Containers.MinRetryPeriod', flag: 'min-retry-period', kind: 'duration' },
  { key: 'Containers.CrunchRunCommand', flag: 'crunch-run-command', kind: 'string' },
  { key: 'Containers.CrunchRunArgumentsList', flag: 'crunch-run-arg', kind: 'list' },
  { key: 'Containers.RuntimeEngine', flag: 'runtime-engine', kind: 'string' },
  { key: 'Containers.ReserveExtraRAM', flag: 'reserve-extra-ram', kind: 'size' },
  // Each batch system's own keys, from its descriptor.
  ...BATCH_SYSTEMS.flatMap((sys) => sys.configKeys.map((k) => ({ ...k, commands: [sys.name] }))),
];

/** The keys `command` reads: the common ones and its own. */
export function configKeysFor(command: string): ConfigKey[] {
  return CONFIG_KEYS.filter((k) => !k.commands || k.commands.includes(command));
}

/**
 * Keys of the sections read whole that are known but not used: documented
 * in some Arvados release's config.default.yml, so not a typo.
 */
const KNOWN_UNUSED: Record<string, readonly string[]> = Object.fromEntries(
  BATCH_SYSTEMS.flatMap((sys) => (sys.knownUnusedKeys ? [[sys.knownUnusedKeys.section, sys.knownUnusedKeys.keys] as const] : [])),
);

/** One `InternalURLs` entry: where to listen. */
export interface ListenAddress {
  host: string;
  port: number;
  /** The InternalURLs key it came from, for messages. */
  url: string;
  /** Serve TLS (an `https://` URL), with `TLS.Certificate` and `TLS.Key` of the config. */
  tls?: boolean;
}

/** A config value in the form a flag would give it, and the key it came from. */
export interface ConfigValue {
  value: string | string[] | boolean | ListenAddress[];
  /** The full key, e.g. `Clusters.zzzzz.Containers.MinRetryPeriod`. */
  key: string;
}

/** A config value and the flag it stands for. */
export interface ConfigEntry extends ConfigValue {
  flag: string;
  /** Commands that read it; undefined: all. */
  commands?: readonly string[];
}

/** The validated parts of a cluster configuration. */
export interface ClusterConfig {
  /** The file it was read from. */
  readonly path: string;
  /** The cluster id (the only key of `Clusters`). */
  readonly clusterId: string;
  /** The values of the keys of {@link CONFIG_KEYS} present and not empty. */
  readonly entries: readonly ConfigEntry[];
  /** The file's hash, its mtime and when it was read (exported on `/metrics`). */
  readonly source: ConfigSourceInfo;
  /** The keys of {@link CONFIG_KEYS} the file names, even with an empty value (which then overrides Arvados' default). */
  readonly present?: ReadonlySet<string>;
}

/** Which file to read: the flag, else `$ARVADOS_CONFIG`, else the default path when it exists. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (flag !== undefined) return flag;
  const fromEnv = env.ARVADOS_CONFIG?.trim();
  if (fromEnv) return fromEnv;
  return existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined;
}

type Node = Record<string, unknown>;

function isMap(v: unknown): v is Node {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `obj[name]`, matching the key case-insensitively as Go's JSON decoding does. */
function lookup(obj: Node, name: string): { key: string; value: unknown } | undefined {
  if (Object.hasOwn(obj, name)) return { key: name, value: obj[name] };
  const lower = name.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return { key: k, value: obj[k] };
  return undefined;
}

// One schema per value kind, all in valibot (the API boundary's library):
// each turns a YAML value into the form the matching flag would give it, or
// fails with a message that names what was expected.

/** A custom check's failure, as an issue carrying its own message. */
type AddIssue = (info: { message: string; path?: [v.IssuePathItem, ...v.IssuePathItem[]] }) => void;

/** Runs `check` on the text; a throw becomes the issue's message. */
function checked(text: string, check: (t: string) => unknown, addIssue: AddIssue): boolean {
  try {
    check(text);
    return true;
  } catch (err) {
    addIssue({ message: describeError(err) });
    return false;
  }
}

const durationText = v.pipe(
  v.union([v.string(), v.literal(0)], 'expected a duration with a unit, e.g. "30s"'),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const text = String(dataset.value);
    if (!checked(text, parseDuration, addIssue)) return NEVER;
    return text.trim() === '0' ? '0s' : text;
  }),
);

const sizeText = v.pipe(
  v.union([v.string(), v.pipe(v.number(), v.integer('expected a whole number of bytes'), v.minValue(0, 'expected a number of bytes >= 0'))], 'expected a size (bytes, or e.g. "256MiB")'),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const text = String(dataset.value);
    return checked(text, parseSize, addIssue) ? text : NEVER;
  }),
);

const urlText = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const text = dataset.value;
    if (text.trim() === '') return '';
    let u: URL;
    try {
      u = new URL(text);
    } catch {
      addIssue({ message: `"${text}" is not a URL` });
      return NEVER;
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') {
      addIssue({ message: `"${text}" is not an http(s) URL` });
      return NEVER;
    }
    // The client takes host[:port] for https (as ARVADOS_API_HOST), and an explicit http:// URL otherwise.
    return u.protocol === 'https:' ? u.host : `http://${u.host}`;
  }),
);

/** The issue path item naming a key of `record`, for an issue a transform adds. */
const keyPath = (record: Record<string, unknown>, key: string): [v.IssuePathItem] => [
  { type: 'object', origin: 'value', input: record, key, value: record[key] },
];

const internalUrls = v.pipe(
  // valibot's record takes an array too; a list of URLs here is a mistake.
  v.custom<Record<string, unknown>>(isMap, 'expected a mapping'),
  v.record(v.string(), v.nullable(v.looseObject({ ListenURL: v.optional(v.nullable(v.string())) }))),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const out: ListenAddress[] = [];
    let failed = false;
    for (const [url, conf] of Object.entries(dataset.value)) {
      if (url === 'SAMPLE') continue;
      const listen = conf?.ListenURL?.trim() || url;
      let u: URL;
      try {
        u = new URL(listen);
      } catch {
        addIssue({ message: `"${listen}" is not a URL`, path: keyPath(dataset.value, url) });
        failed = true;
        continue;
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') {
        addIssue({ message: `"${listen}": not an http:// or https:// URL`, path: keyPath(dataset.value, url) });
        failed = true;
        continue;
      }
      const tls = u.protocol === 'https:';
      const port = u.port ? Number(u.port) : tls ? 443 : 80;
      out.push({ host: u.hostname.replace(/^\[|\]$/g, ''), port, url, ...(tls ? { tls } : {}) });
    }
    return failed ? NEVER : out;
  }),
);

const envName = v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'not a valid environment variable name'));

const SCHEMAS: Record<Kind, v.GenericSchema<unknown, unknown>> = {
  string: v.string(),
  duration: durationText,
  size: sizeText,
  integer: v.pipe(v.number(), v.integer('expected a whole number'), v.minValue(0, 'expected a number >= 0'), v.transform(String)),
  boolean: v.boolean(),
  list: v.array(v.string()),
  env: v.pipe(
    v.record(envName, v.string()),
    v.transform((env) => Object.entries(env).filter(([k]) => k !== 'SAMPLE').map(([k, val]) => `${k}=${val}`)),
  ),
  url: urlText,
  'internal-urls': internalUrls,
};

function bad(path: string, key: string, why: string): UsageError {
  return new UsageError(`${path}: ${key}: ${why}`);
}

/** How YAML values are named in messages. */
function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'object') return 'mapping';
  return typeof value;
}

/** valibot's names of expected types, as messages say them. */
const EXPECTED: Record<string, string> = { Array: 'array', Object: 'mapping' };

/**
 * One issue as "expected X, got Y <value>". The value is shown (cut short)
 * unless the key holds a secret; a transform's own message says it all.
 */
function issueText(issue: v.BaseIssue<unknown>, secret: boolean): string {
  if (issue.kind === 'transformation') return issue.message;
  const shown = secret || (typeof issue.input === 'object' && issue.input !== null) ? '' : ` ${JSON.stringify(issue.input)?.slice(0, 60)}`;
  const got = `got ${typeName(issue.input)}${shown}`;
  // Checks (integer, regex, ...) and unions and custom schemas carry their own "expected ..." message.
  if (issue.kind === 'validation' || issue.type === 'union' || issue.type === 'custom') return `${issue.message}, ${got}`;
  const expected = issue.expected ? (EXPECTED[issue.expected] ?? issue.expected) : undefined;
  return expected ? `expected ${expected}, ${got}` : issue.message;
}

/**
 * Reads and validates the cluster configuration at `path`.
 *
 * @throws {@link UsageError} (exit status 2) naming the file and the key for
 * a missing or unreadable file, bad YAML, not exactly one cluster, an
 * ill-typed key we read, or an unknown key in a section we read whole.
 */
export function loadClusterConfig(path: string): ClusterConfig {
  let text: string;
  let source: ConfigSourceInfo;
  try {
    // One open file for the bytes and the mtime, so both describe the same version of it.
    const fd = openSync(path, 'r');
    try {
      const bytes = readFileSync(fd);
      source = { sha256: createHash('sha256').update(bytes).digest('hex'), mtimeMs: fstatSync(fd).mtimeMs, loadedAtMs: Date.now() };
      text = bytes.toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read cluster config ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : describeError(err)}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: false, uniqueKeys: true });
  } catch (err) {
    throw new UsageError(`${path}: not valid YAML: ${describeError(err)}`);
  }
  const clusters = isMap(doc) ? lookup(doc, 'Clusters') : undefined;
  if (!clusters || !isMap(clusters.value)) throw new UsageError(`${path}: no "Clusters" section`);
  const ids = Object.keys(clusters.value);
  if (ids.length !== 1) {
    throw new UsageError(`${path}: Clusters must hold exactly one cluster, found ${ids.length}${ids.length ? ` (${ids.join(', ')})` : ''}`);
  }
  const clusterId = ids[0];
  if (!/^[a-z0-9]{5}$/.test(clusterId)) throw bad(path, `Clusters.${clusterId}`, 'a cluster id is 5 lowercase letters or digits');
  const cluster = clusters.value[clusterId];
  if (!isMap(cluster)) throw bad(path, `Clusters.${clusterId}`, 'expected a mapping');
  const prefix = `Clusters.${clusterId}`;

  for (const [section, unused] of Object.entries(KNOWN_UNUSED)) {
    const found = walk(cluster, section.split('.'), path, prefix);
    if (found === undefined) continue;
    if (!isMap(found.value)) throw bad(path, `${prefix}.${found.path}`, 'expected a mapping');
    const known = [...CONFIG_KEYS.filter((k) => k.key.startsWith(`${section}.`)).map((k) => k.key.slice(section.length + 1)), ...unused];
    for (const k of Object.keys(found.value)) {
      if (!known.some((n) => n.toLowerCase() === k.toLowerCase())) {
        throw bad(path, `${prefix}.${found.path}.${k}`, `unknown key (known: ${known.join(', ')})`);
      }
    }
  }

  const entries: ConfigEntry[] = [];
  const present = new Set<string>();
  for (const spec of CONFIG_KEYS) {
    const found = walk(cluster, spec.key.split('.'), path, prefix);
    if (found === undefined || found.value === null) continue;
    present.add(spec.key);
    const fullKey = `${prefix}.${found.path}`;
    const parsed = v.safeParse(SCHEMAS[spec.kind], found.value, { abortEarly: true });
    if (!parsed.success) {
      const issue = parsed.issues[0];
      const keys = (issue.path ?? []).map((p) => String(p.key));
      throw bad(path, [fullKey, ...keys].join('.'), issueText(issue, spec.secret === true));
    }
    const value = parsed.output as ConfigValue['value'];
    // An empty string means "not set" in Arvados configs (e.g. SystemRootToken: "").
    if (value === '' || (Array.isArray(value) && value.length === 0 && spec.kind === 'internal-urls')) continue;
    entries.push({ flag: spec.flag, commands: spec.commands, value, key: fullKey });
  }
  return { path, clusterId, entries, present, source };
}

/** Follows `parts` below `obj` case-insensitively; undefined if any is missing. */
function walk(obj: Node, parts: string[], path: string, prefix: string): { value: unknown; path: string } | undefined {
  let cur: unknown = obj;
  const seen: string[] = [];
  for (const p of parts) {
    if (cur === null || cur === undefined) return undefined;
    if (!isMap(cur)) throw bad(path, `${prefix}.${seen.join('.')}`, 'expected a mapping');
    const hit = lookup(cur, p);
    if (!hit) return undefined;
    seen.push(hit.key);
    cur = hit.value;
  }
  return { value: cur, path: seen.join('.') };
}

/**
 * The config values for `command`, by flag name: the keys every command
 * reads, plus those only `command` reads (e.g. `Containers.SLURM.*` for
 * `slurm`).
 */
export function valuesFor(config: ClusterConfig, command: string): Map<string, ConfigValue> {
  const out = new Map<string, ConfigValue>();
  for (const e of config.entries) {
    if (!e.commands || e.commands.includes(command)) out.set(e.flag, { value: e.value, key: e.key });
  }
  return out;
}
