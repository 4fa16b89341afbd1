/**
 * A batch system as one descriptor: everything the generic batch runner and
 * the generic CLI command need to know about one scheduler (its commands,
 * templates, flags, config keys, capabilities, and a factory for its
 * adapter). Each system's folder exports one; `registry.ts` lists them. The
 * core never imports a descriptor: it takes one as a parameter.
 *
 * @module
 */
import type { BatchAdapter, TemplateRules } from './adapter.js';
import type { BatchRunnerOptions } from './options.js';
import { BatchRunner } from './runner.js';

/** A flag of one batch system (besides those every batch command has). */
export interface SystemOption {
  /** A string flag (read with {@link SystemOptionReader}'s getters) or a boolean one. */
  readonly type: 'string' | 'boolean';
  /** Placeholder in the help, e.g. `DURATION`. */
  readonly metavar?: string;
  /** The default as the help shows it. */
  readonly default?: string;
  readonly help: string;
}

/** How a cluster config value is read: the kinds of the CLI's config table. */
export type ConfigKeyKind = 'string' | 'list' | 'env' | 'integer' | 'duration' | 'internal-urls';

/** A key of the Arvados cluster config that stands in for one of the system's flags. */
export interface SystemConfigKey {
  /** Path below `Clusters.<id>`, e.g. `Containers.LSF.BsubSudoUser`. */
  readonly key: string;
  /** The flag (without `--`) it sets. */
  readonly flag: string;
  readonly kind: ConfigKeyKind;
}

/**
 * Typed access to the flags of a batch command, each falling back to its
 * config key (the CLI's parsed options implement it). Every getter names
 * the flag (or key) in its error.
 */
export interface SystemOptionReader {
  /** A boolean flag. */
  flag(name: string): boolean;
  /** A string flag; an empty value is an error. */
  string(name: string): string | undefined;
  /** A string flag as given, even if empty (the flag, else its config value); undefined if neither. */
  rawString(name: string): string | undefined;
  /** A whole number >= `min`. */
  integer(name: string, dflt: number, min?: number): number;
  /** A duration in ms, at least `min`. */
  duration(name: string, dflt: number, min?: number): number;
}

/**
 * The priority model of a scheduler, for the core's renicing:
 * - `nice`: a larger value lowers a job, `priority + nice` is constant (Slurm);
 * - `range`: the job's own priority within a fixed range, larger first
 *   (LSF's user priority, Grid Engine's and PBS's `-p`);
 * - `none`: the order of pending jobs cannot be changed.
 */
export type PriorityModel = 'nice' | 'range' | 'none';

/** What a scheduler can do, which the core and the CLI adapt to. */
export interface SystemCapabilities {
  readonly priority: PriorityModel;
  /**
   * The job name of a container, and back, which the adapter applies in
   * `submit` and `parseQueue` (the core sees container UUIDs only). Absent:
   * the job name is the container UUID itself, as the contract says; a
   * system whose names cannot start with a digit maps them (Grid Engine:
   * `arv-<uuid>`).
   */
  readonly jobName?: { readonly toJob: (uuid: string) => string; readonly toContainer: (name: string) => string };
  /** The scheduler's accounting says why a job ended (`--no-accounting` turns the lookups off). */
  readonly accounting: boolean;
  /**
   * How `%W` (max run time, minutes) is computed: `container` (its
   * `max_run_time`, the core's rule) or `adapter` (the adapter's
   * `maxRunMinutes`, e.g. LSF's overhead and default).
   */
  readonly maxRunTime: 'container' | 'adapter';
}

/** The help texts of the common flags that differ per system. */
export interface SystemHelp {
  /** The commands `--submit-rate` limits, e.g. `sbatch, scancel, scontrol and sacct`. */
  readonly rateCommands: string;
  /** What `--pending-grace` waits for. */
  readonly pendingGrace: string;
  /** What `--no-accounting` stops asking. */
  readonly noAccounting: string;
  /** Where crunch-run runs, e.g. `compute nodes`. */
  readonly hosts: string;
  /** How the error names a host that lacks the commands, e.g. `a Slurm submit host`. */
  readonly hostKind: string;
  /** `--<submit>-arg`. */
  readonly args: string;
  /** `--<submit>-gpu-arg`. */
  readonly gpuArgs: string;
  /** `--priority-spread`: what the gap is. */
  readonly prioritySpread: string;
}

/**
 * One batch system. `A` is its adapter's options (besides the core's).
 *
 * @typeParam A - The options {@link createAdapter} takes.
 */
export interface BatchSystemDescriptor<A extends object = object> {
  /** The command name and registry key, e.g. `slurm`. */
  readonly name: string;
  /** The system's name in messages, e.g. `Grid Engine`. */
  readonly label: string;
  /** One line for the overall help. */
  readonly summary: string;
  /** The command's `--help` description. */
  readonly description: string;
  /** The submit command (names `--<submit>-arg`, `--<submit>-gpu-arg`, `--<submit>-env`) and the queue query (`--<queue>-interval`). */
  readonly commands: { readonly submit: string; readonly queue: string };
  /** Template rules and the default templates. */
  readonly templates: { readonly rules: TemplateRules; readonly args: readonly string[]; readonly gpuArgs: readonly string[] };
  readonly capabilities: SystemCapabilities;
  /** The `--priority-spread` default and least value. */
  readonly prioritySpread: { readonly default: number; readonly min: number };
  readonly help: SystemHelp;
  /** Flags only this system has, in help order; they follow the template flags. */
  readonly options: Readonly<Record<string, SystemOption>>;
  /** Cluster config keys of this system's flags (the common ones are the CLI's). */
  readonly configKeys: readonly SystemConfigKey[];
  /** Keys of the system's config section that are known but unused (not typos). */
  readonly knownUnusedKeys?: { readonly section: string; readonly keys: readonly string[] };
  /** Whether a missing command is a usage error (exit 2) rather than a runtime one (exit 1). */
  readonly missingIsUsage: boolean;
  /** The adapter's options from the flags. @throws an error naming the flag. */
  adapterOptions(read: SystemOptionReader): A;
  /** The executables this host must have, given the adapter options and whether accounting is on. */
  executables(options: A, accounting: boolean): string[];
  /** The adapter: pure, builds commands and reads output. @throws TypeError or RangeError for a bad option. */
  createAdapter(options: A, core: Readonly<Pick<BatchRunnerOptions, 'reserveExtraRam'>>): BatchAdapter;
  /** What the start line says before `<submit> <args>`, and extra JSON fields. */
  startExtras?(options: A): { prefix: string; fields: Record<string, unknown> };
}

/**
 * The batch runner of `system`: the core with the system's adapter and
 * default templates. What the per-system runner classes (`SlurmRunner`...)
 * do, for any descriptor.
 *
 * @param core - The core's options; `args` / `gpuArgs` default to the system's templates.
 * @param adapterOptions - The system's own options.
 * @throws TypeError or RangeError for a bad option; `TemplateError` for a bad template.
 */
export function createBatchRunner<A extends object>(system: BatchSystemDescriptor<A>, core: BatchRunnerOptions, adapterOptions: A): BatchRunner {
  return new BatchRunner(system.createAdapter(adapterOptions, core), core, system.templates);
}
