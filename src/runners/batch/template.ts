/**
 * Argument templates for any batch system, as Arvados configures them
 * (`SbatchArgumentsList`, `BsubArgumentsList`, …): `%x` placeholders expanded
 * per container, with the same rounding as Arvados' dispatchers. Templates are
 * validated once at startup ({@link validateTemplates}), so a typo is an exit
 * status, not a queue of containers cycling through lock and unlock.
 *
 * @module
 */
import type { Container } from '../../types.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';
import type { TemplateRules } from './adapter.js';

const MiB = 1024 * 1024;

// Like Go's `%.`: a percent sign and the one character after it. A lone `%`
// at the very end matches nothing and is passed through, as in Go.
const PERCENT_ANY = /%./gsu;

/** Every placeholder the core can compute a value for. */
export const STANDARD_PLACEHOLDERS: readonly string[] = Object.freeze(['%C', '%G', '%I', '%M', '%P', '%T', '%U', '%W']);

/** A template with a `%x` the batch system does not know. */
export class TemplateError extends Error {
  override name = 'TemplateError';
}

/** Placeholder -> value for one container (`%M` -> `"614"`). */
export type TemplateValues = Readonly<Record<string, string>>;

/**
 * The number of GPUs a container asks for: `runtime_constraints.gpu.device_count`,
 * or the legacy `cuda.device_count` that older API servers send instead.
 */
export function gpuCount(container: Pick<Container, 'runtime_constraints'>): number {
  const rc = container.runtime_constraints;
  const count = rc?.gpu?.device_count || rc?.cuda?.device_count || 0;
  return typeof count === 'number' && count > 0 ? count : 0;
}

const PDH = /^[0-9a-f]{32}\+(\d+)$/;

/**
 * Estimates the disk a Docker image stored by `arv-keepdocker` takes, from the
 * size of its collection's manifest alone (the number after `+` in the
 * portable data hash), so nothing has to be fetched from Keep: each block
 * locator in such a manifest takes 42 characters after an ~80-character
 * header, and each block is assumed full (64 MiB). Returns 0 for anything
 * that is not a portable data hash, e.g. an image name.
 */
export function estimateDockerImageSize(containerImage: string | undefined): number {
  const m = PDH.exec(containerImage ?? '');
  if (!m) return 0;
  const manifestLength = Number(m[1]);
  if (!Number.isSafeInteger(manifestLength) || manifestLength < 122) return 0;
  return Math.trunc((manifestLength - 80) / 42) * 64 * MiB;
}

/**
 * Estimates the scratch disk, in bytes, a container needs on its node: the
 * capacity of its `tmp` mounts, at least enough to buffer the Docker image
 * while it loads, plus room for the extracted image, plus the Keep disk cache
 * (`keep_cache_disk`).
 */
export function estimateScratchSpace(container: Pick<Container, 'mounts' | 'container_image' | 'runtime_constraints'>): number {
  let scratch = 0;
  for (const mount of Object.values(container.mounts ?? {})) {
    if (isTmpMount(mount)) scratch += mount.capacity ?? 0;
  }
  const image = estimateDockerImageSize(container.container_image);
  // The buffered copy is only needed while the image loads, after which its
  // space is free for the container's own tmp use.
  scratch = Math.max(scratch, image) + image;
  return scratch + (container.runtime_constraints?.keep_cache_disk ?? 0);
}

function isTmpMount(mount: unknown): mount is { kind: 'tmp'; capacity?: number } {
  if (typeof mount !== 'object' || mount === null) return false;
  const m = mount as { kind?: unknown; capacity?: unknown };
  return m.kind === 'tmp' && (m.capacity === undefined || typeof m.capacity === 'number');
}

/** Options of {@link templateValues}. */
export interface TemplateValueOptions {
  /** Bytes of RAM to add to the container's request; default {@link DEFAULT_RESERVE_EXTRA_RAM}. */
  reserveExtraRam?: number;
  /** Value of `%I` (the chosen instance type); default empty. */
  instanceType?: string;
  /**
   * Value of `%W` in minutes, when the batch system has its own max-run-time
   * rule (LSF adds `MaxRunTimeOverhead`); 0 for no limit. Default: the
   * container's `max_run_time`, rounded up to minutes.
   */
  maxRunMinutes?: number;
}

/**
 * Every standard placeholder's value for `container`:
 *
 * | placeholder | value |
 * |---|---|
 * | `%C` | vCPUs |
 * | `%G` | GPU count |
 * | `%I` | instance type (may be empty) |
 * | `%M` | MiB of RAM: ram + keep_cache_ram + reserve, rounded up |
 * | `%P` | partitions, comma-separated (empty if none) |
 * | `%T` | MiB of scratch (see {@link estimateScratchSpace}), rounded up |
 * | `%U` | container UUID |
 * | `%W` | max run time in minutes, rounded up; empty for no limit |
 */
export function templateValues(container: Container, options: TemplateValueOptions = {}): Record<string, string> {
  const rc = container.runtime_constraints ?? {};
  const reserve = options.reserveExtraRam ?? DEFAULT_RESERVE_EXTRA_RAM;
  const maxRun = options.maxRunMinutes ?? Math.ceil((container.scheduling_parameters?.max_run_time ?? 0) / 60);
  return {
    '%C': String(rc.vcpus ?? 0),
    '%G': String(gpuCount(container)),
    '%I': options.instanceType ?? '',
    '%M': String(Math.ceil(((rc.ram ?? 0) + (rc.keep_cache_ram ?? 0) + reserve) / MiB)),
    '%P': (container.scheduling_parameters?.partitions ?? []).join(','),
    '%T': String(Math.ceil(estimateScratchSpace(container) / MiB)),
    '%U': container.uuid,
    '%W': maxRun > 0 ? String(maxRun) : '',
  };
}

/**
 * Checks `templates` against `rules` without expanding them.
 *
 * @param what - How to name the templates in the error, e.g. `sbatch arguments`.
 * @throws TemplateError naming the first unknown placeholder.
 */
export function validateTemplates(templates: readonly string[], rules: TemplateRules, what = 'argument templates'): void {
  for (const template of templates) {
    for (const [placeholder] of template.matchAll(PERCENT_ANY)) {
      if (placeholder !== '%%' && !rules.placeholders.includes(placeholder)) {
        throw new TemplateError(`unknown substitution ${placeholder} in ${what} (${JSON.stringify(template)}); known: ${[...rules.placeholders, '%%'].join(' ')}`);
      }
    }
  }
}

/**
 * Expands `templates` with `values`. `%%` is a literal `%`. An argument
 * whose {@link TemplateRules.dropWhenEmpty} placeholder expands to '' is
 * dropped (with the argument before it in `pair` mode): "--partition=" would
 * mean something else to the scheduler than "no partition requested".
 *
 * @throws TemplateError for a placeholder outside `rules` or without a value.
 */
export function expandTemplates(templates: readonly string[], values: TemplateValues, rules: TemplateRules, what = 'argument templates'): string[] {
  const out: string[] = [];
  let previousKept = false;
  for (const template of templates) {
    let drop = false;
    const arg = template.replace(PERCENT_ANY, (placeholder) => {
      if (placeholder === '%%') return '%';
      if (!rules.placeholders.includes(placeholder) || !Object.hasOwn(values, placeholder)) {
        throw new TemplateError(`unknown substitution ${placeholder} in ${what} (${JSON.stringify(template)})`);
      }
      const value = values[placeholder];
      if (value === '' && rules.dropWhenEmpty.includes(placeholder)) drop = true;
      return value;
    });
    if (!drop) out.push(arg);
    // `-W`, `%W`: the option whose value was dropped goes with it.
    else if (rules.dropMode === 'pair' && previousKept && out.at(-1)?.startsWith('-')) out.pop();
    previousKept = !drop;
  }
  return out;
}

/** Options of {@link containerArguments}. */
export interface ContainerArgumentsOptions extends TemplateValueOptions {
  /** Argument templates. */
  args: readonly string[];
  /** Templates added when the container wants GPUs. */
  gpuArgs: readonly string[];
}

/**
 * The expanded templates for `container`: `args`, then `gpuArgs` if it wants GPUs.
 *
 * @throws TemplateError for a placeholder outside `rules`.
 */
export function containerArguments(container: Container, options: ContainerArgumentsOptions, rules: TemplateRules, what = 'argument templates'): string[] {
  const values = templateValues(container, options);
  const templates = gpuCount(container) > 0 ? [...options.args, ...options.gpuArgs] : options.args;
  return expandTemplates(templates, values, rules, what);
}
