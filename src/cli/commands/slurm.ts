/**
 * `arvados-dispatch slurm`: TEMPORARY placeholder until the Slurm runner
 * (src/runners/slurm/) is wired up. Replace this module; keep exporting
 * `summary`, `help()` and `run(argv)`, which `main.ts` expects.
 *
 * @module
 */
import { CliError } from '../errors.js';

/** One line for the overall help. */
export const summary = 'submit queued containers to Slurm (not available yet)';

/** The `--help` text. */
export function help(): string {
  return 'Usage: arvados-dispatch slurm [options]\n\nNot available yet in this version; use "arvados-dispatch local".\n';
}

/** Always fails: exit status 1. */
export function run(_argv: string[]): Promise<number> {
  return Promise.reject(new CliError('the slurm command is not available yet in this version; use "arvados-dispatch local"'));
}
