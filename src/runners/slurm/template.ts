/**
 * sbatch arguments for a container, from the templates an administrator
 * configures (`Containers.SLURM.SbatchArgumentsList` and
 * `SbatchGPUArgumentsList` in Arvados), with the same substitutions and
 * rounding as crunch-dispatch-slurm.
 *
 * @module
 */
import type { Container } from '../../types.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';

/** The nice value every job is submitted with; renicing starts from here. */
export const INITIAL_NICE = 10000;

/** Arvados' default `SbatchArgumentsList`. */
export const DEFAULT_SBATCH_ARGUMENTS: readonly string[] = Object.freeze([
  '--job-name=%U',
  '--mem=%M',
  '--cpus-per-task=%C',
  '--tmp=%T',
  '--partition=%P',
]);

/** Arvados' default `SbatchGPUArgumentsList`, added when GPUs are requested. */
export const DEFAULT_SBATCH_GPU_ARGUMENTS: readonly string[] = Object.freeze(['--gpus=%G']);

export { DEFAULT_RESERVE_EXTRA_RAM };

const MiB = 1024 * 1024;

// Like Go's `%.`: a percent sign and the one character after it. A lone `%`
// at the very end matches nothing and is passed through, as in Go.
const PERCENT_ANY = /%./gu;

/** Thrown for a template with a `%x` this module does not know. */
export class SbatchTemplateError extends Error {
  override name = 'SbatchTemplateError';
}

/** Options of {@link sbatchArgs}. */
export interface SbatchArgsOptions {
  /** Argument templates; default {@link DEFAULT_SBATCH_ARGUMENTS}. `[]` means none. */
  args?: readonly string[];
  /** Templates added when the container wants GPUs; default {@link DEFAULT_SBATCH_GPU_ARGUMENTS}. */
  gpuArgs?: readonly string[];
  /** Bytes of RAM to add to the container's request; default {@link DEFAULT_RESERVE_EXTRA_RAM}. */
  reserveExtraRam?: number;
  /** Value of `%I` (the chosen instance type); default empty. */
  instanceType?: string;
}

/** The values that the `%x` placeholders expand to. */
export interface TemplateValues {
  uuid: string;
  vcpus: number;
  gpus: number;
  instanceType: string;
  /** MiB, already rounded up. */
  memMiB: number;
  partitions: readonly string[];
  /** MiB, already rounded up. */
  tmpMiB: number;
  /** Minutes, already rounded up; 0 means no limit. */
  maxRunMinutes: number;
}

/**
 * The number of GPUs a container asks for: `runtime_constraints.gpu.device_count`,
 * or the legacy `cuda.device_count` that older API servers send instead.
 */
export function gpuCount(container: Pick<Container, 'runtime_constraints'>): number {
  const rc = container.runtime_constraints;
  const count = rc?.gpu?.device_count || rc?.cuda?.device_count || 0;
  return count > 0 ? count : 0;
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
export function estimateScratchSpace(
  container: Pick<Container, 'mounts' | 'container_image' | 'runtime_constraints'>,
): number {
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

/** Computes every placeholder's value for `container`. */
export function templateValues(
  container: Container,
  options: Pick<SbatchArgsOptions, 'reserveExtraRam' | 'instanceType'> = {},
): TemplateValues {
  const rc = container.runtime_constraints ?? {};
  const reserve = options.reserveExtraRam ?? DEFAULT_RESERVE_EXTRA_RAM;
  return {
    uuid: container.uuid,
    vcpus: rc.vcpus ?? 0,
    gpus: gpuCount(container),
    instanceType: options.instanceType ?? '',
    memMiB: Math.ceil(((rc.ram ?? 0) + (rc.keep_cache_ram ?? 0) + reserve) / MiB),
    partitions: container.scheduling_parameters?.partitions ?? [],
    tmpMiB: Math.ceil(estimateScratchSpace(container) / MiB),
    maxRunMinutes: Math.ceil((container.scheduling_parameters?.max_run_time ?? 0) / 60),
  };
}

/**
 * Expands argument templates:
 *
 * | placeholder | value |
 * |---|---|
 * | `%%` | a literal `%` |
 * | `%C` | vCPUs |
 * | `%G` | GPU count |
 * | `%I` | instance type (may be empty) |
 * | `%M` | MiB of RAM: ram + keep_cache_ram + reserve, rounded up |
 * | `%P` | partitions, comma-separated; an argument whose `%P` is empty is dropped |
 * | `%T` | MiB of scratch (see {@link estimateScratchSpace}), rounded up |
 * | `%U` | container UUID |
 * | `%W` | max run time in minutes, rounded up; an argument whose `%W` is 0 is dropped |
 *
 * @throws SbatchTemplateError for any other `%x`.
 */
export function expandTemplates(templates: readonly string[], values: TemplateValues): string[] {
  const repl: Record<string, string> = {
    '%%': '%',
    '%C': String(values.vcpus),
    '%G': String(values.gpus),
    '%I': values.instanceType,
    '%M': String(values.memMiB),
    '%P': values.partitions.join(','),
    '%T': String(values.tmpMiB),
    '%U': values.uuid,
    '%W': String(values.maxRunMinutes),
  };
  const out: string[] = [];
  for (const template of templates) {
    let skip = false;
    const arg = template.replace(PERCENT_ANY, (placeholder) => {
      if (!Object.hasOwn(repl, placeholder)) {
        throw new SbatchTemplateError(`Unknown substitution parameter ${placeholder} in sbatch arguments`);
      }
      const value = repl[placeholder];
      // "--partition=" or "--time=0" would mean something else to sbatch
      // than "no partition requested" / "no time limit".
      if ((placeholder === '%P' && value === '') || (placeholder === '%W' && value === '0')) {
        skip = true;
      }
      return value;
    });
    if (!skip) out.push(arg);
  }
  return out;
}

/**
 * The sbatch arguments for `container`: `--nice=10000 --no-requeue`, then the
 * expanded `args` templates, then the expanded `gpuArgs` templates if the
 * container wants GPUs.
 *
 * `--no-requeue` because a requeued job would run the container a second
 * time behind Arvados' back.
 *
 * @example
 * sbatchArgs(ctr, { reserveExtraRam: 0 })
 * // => ['--nice=10000', '--no-requeue', '--job-name=zzzzz-dz642-…', '--mem=…', …]
 * @throws SbatchTemplateError for an unknown placeholder.
 */
export function sbatchArgs(container: Container, options: SbatchArgsOptions = {}): string[] {
  const values = templateValues(container, options);
  const templates = [...(options.args ?? DEFAULT_SBATCH_ARGUMENTS)];
  if (values.gpus > 0) {
    templates.push(...(options.gpuArgs ?? DEFAULT_SBATCH_GPU_ARGUMENTS));
  }
  return [`--nice=${INITIAL_NICE}`, '--no-requeue', ...expandTemplates(templates, values)];
}
