/**
 * The bsub command line for a container, from the templates an administrator
 * configures (`Containers.LSF.BsubArgumentsList`, `BsubGPUArguments`,
 * `BsubSudoUser`, `MaxRunTimeOverhead`, `MaxRunTimeDefault` in Arvados), with
 * the substitutions and rounding of Arvados' `arvados-dispatch-lsf`.
 *
 * @module
 */
import type { Container } from '../../../types.js';
import type { TemplateRules } from '../adapter.js';
import { expandTemplates, gpuCount, templateValues, validateTemplates } from '../template.js';

/** Arvados' default `Containers.LSF.BsubArgumentsList`. */
export const DEFAULT_BSUB_ARGUMENTS: readonly string[] = Object.freeze([
  '-o', '/tmp/crunch-run.%%J.out',
  '-e', '/tmp/crunch-run.%%J.err',
  '-J', '%U',
  '-n', '%C',
  '-D', '%MMB',
  '-R', 'rusage[mem=%MMB:tmp=%TMB] span[hosts=1]',
  '-R', 'select[mem>=%MMB]',
  '-R', 'select[tmp>=%TMB]',
  '-R', 'select[ncpus>=%C]',
  '-We', '%W',
]);

/** Arvados' default `Containers.LSF.BsubGPUArguments`, added when GPUs are requested. */
export const DEFAULT_BSUB_GPU_ARGUMENTS: readonly string[] = Object.freeze(['-gpu', 'num=%G']);

/** Arvados' default `Containers.LSF.MaxRunTimeOverhead` (5 minutes), in ms. */
export const DEFAULT_MAX_RUN_TIME_OVERHEAD = 5 * 60_000;

/**
 * LSF's placeholders: those of Arvados' LSF dispatcher. `%W` is dropped
 * with the option before it (`-We`, `%W`) when there is no limit: LSF has no
 * value meaning "no limit".
 */
export const LSF_TEMPLATE_RULES: TemplateRules = Object.freeze({
  placeholders: Object.freeze(['%C', '%G', '%I', '%M', '%T', '%U', '%W']),
  dropWhenEmpty: Object.freeze(['%W']),
  dropMode: 'pair',
});

/** How bsub templates are named in errors, as Arvados names them. */
const WHAT = 'BsubArgumentsList';

/** How bsub arguments are built from the templates (options of the LSF adapter and runner). */
export interface BsubOptions {
  /** Argument templates; default {@link DEFAULT_BSUB_ARGUMENTS}. */
  args?: readonly string[];
  /** Templates added when the container wants GPUs; default {@link DEFAULT_BSUB_GPU_ARGUMENTS}. */
  gpuArgs?: readonly string[];
  /** Bytes of RAM added to the request; default 550 MiB. */
  reserveExtraRam?: number;
  /** Added to a known max run time for `%W`, in ms; default {@link DEFAULT_MAX_RUN_TIME_OVERHEAD}. */
  maxRunTimeOverhead?: number;
  /** Max run time for containers without one, in ms; default 0 (none). */
  maxRunTimeDefault?: number;
}

/** Per-container values of {@link bsubArgs} chosen by the runner. */
export interface BsubContainerValues {
  /** `%I`: the chosen instance type; default empty. */
  instanceType?: string;
}

/**
 * Checks templates once at startup, so that a typo stops the dispatcher
 * before any container is locked instead of failing every submission.
 *
 * @throws TemplateError naming the first unknown placeholder.
 */
export function validateBsubTemplates(templates: readonly string[]): void {
  validateTemplates(templates, LSF_TEMPLATE_RULES, WHAT);
}

/**
 * `%W`: minutes of the container's `max_run_time` (or `maxRunTimeDefault`
 * when it has none) plus the overhead, rounded up; 0 when neither is set,
 * because the overhead alone is not a limit anyone asked for.
 */
export function maxRunMinutes(container: Pick<Container, 'scheduling_parameters'>, options: BsubOptions = {}): number {
  let ms = (container.scheduling_parameters?.max_run_time ?? 0) * 1000;
  if (!(ms > 0)) ms = options.maxRunTimeDefault ?? 0;
  if (!(ms > 0)) return 0;
  ms += options.maxRunTimeOverhead ?? DEFAULT_MAX_RUN_TIME_OVERHEAD;
  return Math.ceil(ms / 60_000);
}

/**
 * The bsub arguments for `container` (its script goes on stdin):
 *
 * | placeholder | value |
 * |---|---|
 * | `%%` | a literal `%` (so `%%J` reaches bsub as its own `%J`) |
 * | `%C` | vCPUs |
 * | `%G` | GPU count |
 * | `%I` | instance type (empty when none is configured) |
 * | `%M` | MiB of RAM: ram + keep_cache_ram + reserve, rounded up |
 * | `%T` | MiB of scratch, rounded up |
 * | `%U` | container UUID |
 * | `%W` | minutes of max run time (see {@link maxRunMinutes}) |
 *
 * The GPU templates are added when the container wants GPUs.
 *
 * @example
 * bsubArgs(ctr, { args: ['-J', '%U', '-We', '%W'] }) // => ['-J', 'zzzzz-dz642-…'] without a max run time
 * @throws TemplateError for an unknown placeholder.
 */
export function bsubArgs(container: Container, options: BsubOptions = {}, chosen: BsubContainerValues = {}): string[] {
  const minutes = maxRunMinutes(container, options);
  const values = {
    ...templateValues(container, { reserveExtraRam: options.reserveExtraRam, instanceType: chosen.instanceType }),
    '%W': minutes > 0 ? String(minutes) : '',
  };
  const templates = [...(options.args ?? DEFAULT_BSUB_ARGUMENTS)];
  if (gpuCount(container) > 0) templates.push(...(options.gpuArgs ?? DEFAULT_BSUB_GPU_ARGUMENTS));
  return expandTemplates(templates, values, LSF_TEMPLATE_RULES, WHAT);
}
