/**
 * The bsub command line for a container, from the templates an administrator
 * configures (`Containers.LSF.BsubArgumentsList`, `BsubGPUArguments`,
 * `BsubSudoUser`, `MaxRunTimeOverhead`, `MaxRunTimeDefault` in Arvados), with
 * the substitutions and rounding of Arvados' `arvados-dispatch-lsf`.
 *
 * @module
 */
import type { Container } from '../../types.js';
import { DEFAULT_RESERVE_EXTRA_RAM } from '../defaults.js';
import { estimateScratchSpace, gpuCount } from '../slurm/template.js';

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

const MiB = 1024 * 1024;
const KNOWN = new Set(['%%', '%C', '%G', '%M', '%T', '%U', '%W']);
// Like Go's `%.`: a percent sign and the one character after it.
const PERCENT_ANY = /%./gu;

/** A template with a `%x` that bsub templates do not know. */
export class BsubTemplateError extends Error {
  override name = 'BsubTemplateError';
}

/** Options of {@link bsubCommand}. */
export interface BsubOptions {
  /** Argument templates; default {@link DEFAULT_BSUB_ARGUMENTS}. */
  args?: readonly string[];
  /** Templates added when the container wants GPUs; default {@link DEFAULT_BSUB_GPU_ARGUMENTS}. */
  gpuArgs?: readonly string[];
  /** Run bsub as this user through `sudo -E -u USER`; default none. */
  sudoUser?: string;
  /** Bytes of RAM added to the request; default {@link DEFAULT_RESERVE_EXTRA_RAM}. */
  reserveExtraRam?: number;
  /** Added to a known max run time for `%W`, in ms; default {@link DEFAULT_MAX_RUN_TIME_OVERHEAD}. */
  maxRunTimeOverhead?: number;
  /** Max run time for containers without one, in ms; default 0 (none). */
  maxRunTimeDefault?: number;
}

/** A command and its arguments, ready for a spawn without a shell. */
export interface CommandLine {
  command: string;
  args: string[];
}

/**
 * Checks templates once at startup, so that a typo stops the dispatcher
 * before any container is locked instead of failing every submission.
 *
 * @throws BsubTemplateError naming every unknown placeholder.
 */
export function validateBsubTemplates(templates: readonly string[]): void {
  const unknown = new Set<string>();
  for (const t of templates) {
    for (const m of t.matchAll(PERCENT_ANY)) if (!KNOWN.has(m[0])) unknown.add(m[0]);
  }
  if (unknown.size > 0) {
    throw new BsubTemplateError(
      [...unknown].map((p) => `Unknown substitution parameter ${p} in BsubArgumentsList`).join(', '),
    );
  }
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
 * The bsub command for `container` (its script goes on stdin):
 *
 * | placeholder | value |
 * |---|---|
 * | `%%` | a literal `%` (so `%%J` reaches bsub as its own `%J`) |
 * | `%C` | vCPUs |
 * | `%G` | GPU count |
 * | `%M` | MiB of RAM: ram + keep_cache_ram + reserve, rounded up |
 * | `%T` | MiB of scratch, rounded up |
 * | `%U` | container UUID |
 * | `%W` | minutes of max run time (see {@link maxRunMinutes}) |
 *
 * When `%W` is 0, a `-W %W` or `-We %W` pair is left out entirely: LSF has
 * no value meaning "no limit". With `sudoUser`, the command becomes
 * `sudo -E -u USER bsub …` (`-E` keeps the credentials in the environment).
 *
 * @throws BsubTemplateError for an unknown placeholder.
 */
export function bsubCommand(container: Container, options: BsubOptions = {}): CommandLine {
  const rc = container.runtime_constraints ?? {};
  const reserve = options.reserveExtraRam ?? DEFAULT_RESERVE_EXTRA_RAM;
  const gpus = gpuCount(container);
  const minutes = maxRunMinutes(container, options);
  const repl: Record<string, string> = {
    '%%': '%',
    '%C': String(rc.vcpus ?? 0),
    '%G': String(gpus),
    '%M': String(Math.ceil(((rc.ram ?? 0) + (rc.keep_cache_ram ?? 0) + reserve) / MiB)),
    '%T': String(Math.ceil(estimateScratchSpace(container) / MiB)),
    '%U': container.uuid,
    '%W': String(minutes),
  };
  const templates = [...(options.args ?? DEFAULT_BSUB_ARGUMENTS)];
  if (gpus > 0) templates.push(...(options.gpuArgs ?? DEFAULT_BSUB_GPU_ARGUMENTS));
  validateBsubTemplates(templates);
  const args: string[] = [];
  templates.forEach((template, i) => {
    if (template === '%W' && minutes === 0 && i > 0 && (templates[i - 1] === '-W' || templates[i - 1] === '-We')) {
      args.pop();
      return;
    }
    args.push(template.replace(PERCENT_ANY, (p) => repl[p]));
  });
  if (options.sudoUser) return { command: 'sudo', args: ['-E', '-u', options.sudoUser, 'bsub', ...args] };
  return { command: 'bsub', args };
}
