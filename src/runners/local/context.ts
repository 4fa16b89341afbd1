/**
 * What the parts of the local runner share of it: its settings, its pool,
 * its events and its pid files. The runner is the only implementation; the
 * parts take this instead of the runner so that none of them can reach
 * into another's state.
 *
 * @module
 */
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import type { Container } from '../../types.js';
import type { CrunchRunCredentials } from '../crunch-run.js';
import type { Emit } from './events.js';
import type { LocalSettings } from './options.js';
import type { PidFiles } from './pid-files.js';
import type { Allocation, ResourceNeed, ResourcePool } from './resources.js';

/** A {@link LocalRunner} as its parts see it. */
export interface LocalContext {
  readonly settings: LocalSettings;
  readonly pool: ResourcePool;
  /** Emits an event; a throwing listener is logged, never thrown. */
  readonly emit: Emit;
  /** Whether `close()` was called: nothing new is started, and crunch-run processes of a previous dispatcher are left running. */
  isClosing(): boolean;
  /** The pid files of `d`'s API host and token user. */
  pids(d: Dispatcher): PidFiles;
  /** What `c` needs from the pool (see {@link LocalRunner.needOf}). */
  needOf(c: Readonly<Container>): ResourceNeed;
  /** crunch-run's argv and environment for `uuid` (see {@link LocalRunner.commandFor}). */
  commandFor(uuid: string, credentials: CrunchRunCredentials, gpus?: Pick<Allocation, 'gpuStack' | 'gpuIds'>): { argv: string[]; env: Record<string, string> };
}
