/**
 * Command-line parsing shared by the commands: one table per command drives
 * both `node:util` `parseArgs` and the `--help` text, and typed getters turn
 * values into numbers, durations and sizes, naming the flag when one is bad.
 *
 * @module
 */
import { describeError } from '../util/errors.js';
import { parseArgs } from 'node:util';
import { configPath, loadClusterConfig, type ClusterConfig, type ConfigValue } from './config.js';
import { valuesWithDefaults } from './config-defaults.js';
import { parseDuration } from './duration.js';
import { UsageError } from './errors.js';
import { GO_FLAGS_NOTE, goSpellings } from './go-flags.js';
import { parseSize } from './size.js';
import { parseRate } from '../runners/batch/limiter.js';
import type { SubmitRate } from '../runners/batch/options.js';

/** One option of a command. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  /** May be given several times; the values are collected in order. */
  multiple?: boolean;
  short?: string;
  /** Placeholder shown in help, e.g. `DURATION`. */
  metavar?: string;
  /** Default shown in help (the command applies it). */
  default?: string;
  help: string;
}

/** A command's options by long name (without `--`). */
export type OptionTable = Record<string, OptionSpec>;

/** Parsed values: strings, booleans or string lists, as the table says. */
export type OptionValues = Record<string, string | boolean | string[] | undefined>;

/** The `--help` option every command has. */
export const HELP_OPTION: OptionSpec = { type: 'boolean', short: 'h', help: 'show this help' };

/** `--json`, for every command. */
export const JSON_OPTION: OptionSpec = { type: 'boolean', help: 'one JSON object per line instead of text' };

/**
 * Options of the Dispatcher and of running as a service, the same for every
 * command that talks to a real API.
 */
export const DISPATCHER_OPTIONS: OptionTable = {
  config: {
    type: 'string',
    metavar: 'PATH',
    default: '$ARVADOS_CONFIG, else /etc/arvados/config.yml if it exists',
    help: "Arvados cluster configuration to take settings from (Arvados' defaults fill the keys it leaves out); flags win over it",
  },
  'poll-interval': { type: 'string', metavar: 'DURATION', default: '10s', help: 'time between queue polls' },
  'min-retry-period': { type: 'string', metavar: 'DURATION', default: '0s', help: 'minimum time between attempts to start the same container' },
  'batch-size': { type: 'string', metavar: 'N', default: '1000 (API.MaxItemsPerResponse)', help: 'page size of container queries' },
  'lock-concurrency': { type: 'string', metavar: 'N', default: '8', help: 'lock requests in flight at once' },
  'max-jobs': {
    type: 'string',
    metavar: 'N',
    default: '1000 for slurm, lsf and sge; none for local (its resources are the cap)',
    help: 'containers in flight at most; beyond it queued containers are not locked (no dispatch attempt is charged)',
  },
  'supervisor-fraction': {
    type: 'string',
    metavar: 'F',
    default: 'Containers.CloudVMs.SupervisorFraction of the config, else no cap',
    help: 'workflow runners (scheduling_parameters.supervisor) hold at most floor(F x --max-jobs) of the slots, at least 1; 0 for no cap; no cap without --max-jobs',
  },
  'no-events': {
    type: 'boolean',
    help: "do not listen to the API's event stream; only poll every --poll-interval",
  },
  listen: {
    type: 'string',
    metavar: 'HOST:PORT',
    help: 'serve the management API (health, metrics, containers) here; default: the config\'s InternalURLs of this service, else none',
  },
  'management-token-file': {
    type: 'string',
    metavar: 'PATH',
    help: 'file holding the token the management API requires (default: ManagementToken of the config)',
  },
};

/** `--submit-rate`, for the commands that submit to a batch system (see {@link parseSubmitRate}). */
export const SUBMIT_RATE_OPTION: OptionSpec = {
  type: 'string',
  metavar: 'N/PERIOD',
  help: 'at most N scheduler commands (submit, renice, cancel) per PERIOD, e.g. 20/1s or 600/1m',
};

/**
 * Parses `N/PERIOD` as `--submit-rate` takes it (`20/1s`, `600/1m`), with
 * the batch core's rule and Go-style durations.
 *
 * @throws RangeError naming the bad text.
 */
export function parseSubmitRate(text: string): SubmitRate {
  return parseRate(text, parseDuration);
}

/** `--status-interval`, `--json` and `--help`, last in the tables of the dispatching commands. */
export const OUTPUT_OPTIONS: OptionTable = {
  'status-interval': { type: 'string', metavar: 'DURATION', default: '30s', help: 'time between status lines; 0 for only the last one' },
  json: JSON_OPTION,
  help: HELP_OPTION,
};

/** The end of the help of the dispatching commands. */
export const DISPATCHING_FOOTER =
  'Credentials: the cluster config (Services.Controller.ExternalURL,\n' +
  'SystemRootToken, TLS.Insecure); only if it names neither the controller nor\n' +
  'the token, ARVADOS_API_HOST, ARVADOS_API_TOKEN, ARVADOS_API_HOST_INSECURE or\n' +
  '$HOME/.config/arvados/settings.conf (deprecated).\n' +
  'Under systemd (Type=notify): READY=1 once serving, STOPPING=1 on a stop.\n' +
  `${GO_FLAGS_NOTE}\n` +
  'Details on stderr: DEBUG=arvados-dispatch:*\n' +
  'Stop with SIGINT, SIGTERM or SIGQUIT (a second one exits at once).\n' +
  'Exit status: 0 after a clean stop, 1 if it cannot start or run,\n' +
  '2 on a bad command line or configuration.';

interface NodeError extends Error {
  code?: string;
}

/**
 * Parses `argv` (the arguments after the command name) strictly: unknown
 * options, missing values and positional arguments are {@link UsageError}s.
 */
export function parseOptions(argv: readonly string[], table: OptionTable, command: string): OptionValues {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const [name, spec] of Object.entries(table)) {
    options[name] = { type: spec.type, ...(spec.multiple ? { multiple: true } : {}), ...(spec.short ? { short: spec.short } : {}) };
  }
  try {
    const { values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
    return values as OptionValues;
  } catch (err) {
    const e = err as NodeError;
    const quoted = /'([^']*)'/.exec(e.message)?.[1];
    let msg: string;
    switch (e.code) {
      case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
        msg = `unknown option '${quoted ?? '?'}'`;
        break;
      case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
        msg = `unexpected argument '${quoted ?? '?'}' (${command} takes no positional arguments)`;
        break;
      default:
        if (/ambiguous/.test(e.message) && quoted) {
          msg = `option '${quoted}' needs a value; write ${quoted}=VALUE for a value starting with '-'`;
        } else {
          // e.g. "Option '--poll-interval <value>' argument missing": its first sentence
          msg = e.message.split(/\.\s/)[0].replace(/^./, (c) => c.toLowerCase());
        }
    }
    throw new UsageError(`${msg}; see 'arvados-dispatch ${command} --help'`);
  }
}

/**
 * Parses a dispatching command's arguments: the Go dispatchers' single-dash
 * spellings are accepted (see `go-flags.ts`), then the cluster config is
 * read (unless only `--help` is asked) and its values become the defaults of
 * the flags they map to.
 *
 * @throws {@link UsageError} for a bad command line or a bad config file.
 */
export function parseCommandLine(argv: readonly string[], table: OptionTable, command: string, env: NodeJS.ProcessEnv = process.env): Options {
  const { args, notes } = goSpellings(argv, table);
  const values = parseOptions(args, table, command);
  if (values.help === true || !Object.hasOwn(table, 'config')) return new Options(values, command, { notes });
  const flag = values.config;
  const path = configPath(typeof flag === 'string' ? flag : undefined, env);
  const config = path === undefined ? undefined : loadClusterConfig(path);
  return new Options(values, command, { config, notes });
}

const HELP_WIDTH = 80;

/** Splits `text` into lines of at most `width` characters, at spaces (at least 30 wide). */
function wrap(text: string, width: number): string[] {
  const w = Math.max(30, width);
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > w) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

/** The `--help` text: usage line, description, then the options table (wrapped at 80 columns). */
export function formatHelp(usage: string, description: string, table: OptionTable, footer = ''): string {
  const rows = Object.entries(table).map(([name, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : '    '}--${name}${spec.metavar ? ` ${spec.metavar}` : ''}`;
    const text = `${spec.help}${spec.default !== undefined ? ` (default ${spec.default})` : ''}${spec.multiple ? ' [repeatable]' : ''}`;
    return [flag, text] as const;
  });
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  const lines = rows.map(([f, t]) => `  ${f.padEnd(width)}${wrap(t, HELP_WIDTH - 2 - width).join(`\n${' '.repeat(width + 2)}`)}`);
  return `Usage: ${usage}\n\n${description}\n\nOptions:\n${lines.join('\n')}\n${footer ? `\n${footer}\n` : ''}`;
}

/** What {@link Options} knows besides the flags. */
export interface OptionsContext {
  /** The cluster config read, whose values stand in for flags not given. */
  config?: ClusterConfig;
  /** Notes about the command line to show once output is set up (e.g. an ignored Go flag). */
  notes?: readonly string[];
}

/**
 * Typed access to parsed values; every error names the flag, or the config
 * key a value came from. A flag not given falls back to the cluster
 * config's value for it (see `CONFIG_KEYS` in `config.ts`).
 */
export class Options {
  readonly #values: OptionValues;
  readonly #command: string;
  readonly #fromConfig: ReadonlyMap<string, ConfigValue>;
  /** The cluster config read, if any. */
  readonly config: ClusterConfig | undefined;
  /** Notes about the command line, e.g. Go flags accepted but ignored. */
  readonly notes: readonly string[];

  constructor(values: OptionValues, command: string, context: OptionsContext = {}) {
    this.#values = values;
    this.#command = command;
    this.config = context.config;
    this.notes = context.notes ?? [];
    this.#fromConfig = context.config ? valuesWithDefaults(context.config, command) : new Map();
  }

  /** The command these options are for. */
  get command(): string {
    return this.#command;
  }

  #bad(name: string, why: string): UsageError {
    const cfg = this.#values[name] === undefined ? this.#fromConfig.get(name) : undefined;
    if (cfg && this.config) return new UsageError(`${this.config.path}: ${cfg.key}: ${why}`);
    return new UsageError(`--${name}: ${why}; see 'arvados-dispatch ${this.#command} --help'`);
  }

  /** The config value standing in for flag `name`, when the flag is not given. */
  configValue(name: string): ConfigValue | undefined {
    return this.#values[name] === undefined ? this.#fromConfig.get(name) : undefined;
  }

  /** A boolean flag (or its config value). */
  flag(name: string): boolean {
    const v = this.#values[name];
    if (v !== undefined) return v === true;
    return this.#fromConfig.get(name)?.value === true;
  }

  /** A string flag's own value as given on the command line, even if empty; undefined if not given. */
  givenString(name: string): string | undefined {
    const v = this.#values[name];
    return typeof v === 'string' ? v : undefined;
  }

  /** A string flag, else its config value; an empty value is a usage error. */
  string(name: string): string | undefined {
    let v = this.#values[name];
    if (v === undefined) {
      const c = this.#fromConfig.get(name)?.value;
      if (typeof c === 'string') v = c;
    }
    if (typeof v !== 'string') return undefined;
    if (v.trim() === '') throw this.#bad(name, 'must not be empty');
    this.#noNul(name, v);
    return v;
  }

  /**
   * A NUL cannot be passed in an argument or environment value: left in, it
   * would fail every crunch-run start (and charge every container) instead
   * of failing once here.
   */
  #noNul(name: string, v: string): void {
    if (v.includes('\0')) throw this.#bad(name, 'must not contain a NUL character');
  }

  /** The values of a repeatable flag; if it is not given, the config's list. */
  list(name: string): string[] {
    const v = this.#values[name];
    const c = this.#fromConfig.get(name)?.value;
    const out = Array.isArray(v) && v.length ? [...v] : typeof v === 'string' ? [v] : Array.isArray(c) && c.every((x) => typeof x === 'string') ? [...(c as string[])] : [];
    for (const x of out) this.#noNul(name, x);
    return out;
  }

  /** `--submit-rate` style `N/PERIOD` (see {@link parseSubmitRate}). */
  rate(name: string): SubmitRate | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    try {
      return parseSubmitRate(v);
    } catch (err) {
      throw this.#bad(name, describeError(err));
    }
  }

  /** An integer >= `min`. */
  integer(name: string, dflt: number, min?: number): number;
  integer(name: string, dflt: undefined, min?: number): number | undefined;
  integer(name: string, dflt: number | undefined, min = 1): number | undefined {
    const v = this.string(name);
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(Number(v)) || Number(v) < min) {
      throw this.#bad(name, `"${v}" is not a whole number >= ${min}`);
    }
    return Number(v);
  }

  /** A duration in ms (see {@link parseDuration}), at least `min` ms. */
  duration(name: string, dflt: number, min = 0): number {
    const v = this.string(name);
    if (v === undefined) return dflt;
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch (err) {
      throw this.#bad(name, describeError(err));
    }
    if (ms < min) throw this.#bad(name, `must be at least ${min} ms, got "${v}"`);
    return ms;
  }

  /** A size in bytes (see {@link parseSize}), at least `min`. */
  size(name: string, dflt: number | undefined, min = 0): number | undefined {
    const v = this.string(name);
    if (v === undefined) return dflt;
    let n: number;
    try {
      n = parseSize(v);
    } catch (err) {
      throw this.#bad(name, describeError(err));
    }
    if (n < min) throw this.#bad(name, `must be at least ${min} bytes, got "${v}"`);
    return n;
  }
}
