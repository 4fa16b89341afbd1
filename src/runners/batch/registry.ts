/**
 * The batch systems, by command name: one descriptor per system, each from
 * its own folder. Adding a system is a folder and a line here. The core
 * (`runners/batch/*.ts`) never imports this file or a system folder.
 *
 * @module
 */
import type { BatchSystemDescriptor } from './descriptor.js';
import { lsf } from './lsf/index.js';
import { pbs } from './pbs/index.js';
import { sge } from './sge/index.js';
import { slurm } from './slurm/index.js';

/** Every batch system, in the order the CLI lists them. */
export const BATCH_SYSTEMS: readonly BatchSystemDescriptor[] = Object.freeze([
  slurm,
  lsf,
  sge,
  pbs,
]);

/** The batch system named `name` (its command name), if there is one. */
export function batchSystem(name: string): BatchSystemDescriptor | undefined {
  return BATCH_SYSTEMS.find((s) => s.name === name);
}
