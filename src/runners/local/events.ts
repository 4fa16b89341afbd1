/**
 * What a {@link LocalRunner} tells its listeners, and how it tells them:
 * every event goes to the runner's own emitter ({@link LocalRunnerEvents})
 * and to its runner-neutral one ({@link RunnerEvents}, through
 * `LocalRunner.events`), and a listener that throws must never break a
 * container's run.
 *
 * @module
 */
import type { EventEmitter } from 'node:events';
import type {
  RunnerAdopted,
  RunnerEvents,
  RunnerExited,
  RunnerNotice,
  RunnerOutput,
  RunnerSignalled,
  RunnerStarted,
} from '../../dispatcher/runner.js';
import { logger } from '../../log.js';
import type { ContainerState } from '../../types.js';
import { describeError } from '../../util/errors.js';
import type { ResourceNeed } from './resources.js';

const log = logger('local');

export type { RunnerNotice } from '../../dispatcher/runner.js';

/**
 * Events of a {@link LocalRunner} on its own emitter (`runner.on(…)`). The
 * same events, with `finished` split into the neutral `finished` and
 * `outcome`, come through `runner.events` as {@link RunnerEvents}, the set
 * every runner shares.
 */
export interface LocalRunnerEvents {
  /** The container does not fit into what is free now and waits for resources. */
  waiting: [e: { uuid: string; need: ResourceNeed; message: string }];
  /** crunch-run started. */
  started: [e: RunnerStarted];
  /** A line crunch-run wrote. */
  output: [e: RunnerOutput];
  /** A signal was sent to crunch-run to stop it. */
  signalled: [e: RunnerSignalled];
  /** A crunch-run started by an earlier runner (before a restart) still runs for the container; it is followed instead of starting another. */
  adopted: [e: RunnerAdopted];
  /** crunch-run exited. */
  exited: [e: RunnerExited];
  /** The container reached a final state while this runner had it. */
  finished: [e: { uuid: string; state: ContainerState; exitCode: number | null; process?: { code: number | null; signal: NodeJS.Signals | null } }];
  /** The runner cancelled the container. */
  cancelled: [e: RunnerNotice];
  /** The container can never fit on this node; the runner cancelled it. */
  rejected: [e: RunnerNotice];
  /** The runner released the container with an unlock (crunch-run exited before starting it). */
  unlocked: [e: RunnerNotice];
  /** The runner returned without starting crunch-run (priority 0, stream ended, shutdown); the dispatcher unlocks it. */
  skipped: [e: RunnerNotice];
}

/** Emits a {@link LocalRunnerEvents} event; see {@link safeEmitter}. */
export type Emit = <K extends keyof LocalRunnerEvents>(name: K, ...args: LocalRunnerEvents[K]) => void;

/** One emission on the neutral emitter: an event's name and its arguments. */
type NeutralEmission = { [K in keyof RunnerEvents]: [K, ...RunnerEvents[K]] }[keyof RunnerEvents];

/**
 * What each local event is as {@link RunnerEvents}: the same payload under
 * the same name, except `finished`, which is the neutral `finished` (uuid,
 * final state) followed by `outcome` (the details).
 */
const NEUTRAL: { [K in keyof LocalRunnerEvents]: (...args: LocalRunnerEvents[K]) => NeutralEmission[] } = {
  waiting: (e) => [['waiting', e]],
  started: (e) => [['started', e]],
  output: (e) => [['output', e]],
  signalled: (e) => [['signalled', e]],
  adopted: (e) => [['adopted', e]],
  exited: (e) => [['exited', e]],
  finished: (e) => [
    ['finished', e.uuid, e.state],
    ['outcome', e],
  ],
  cancelled: (e) => [['cancelled', e]],
  rejected: (e) => [['rejected', e]],
  unlocked: (e) => [['unlocked', e]],
  skipped: (e) => [['skipped', e]],
};

/** Calls `emitter.emit`, logging a throwing listener instead of letting it reach the container's run. */
function emitSafely(emitter: EventEmitter, name: string, args: readonly unknown[]): void {
  try {
    emitter.emit(name, ...args);
  } catch (err) {
    log('a %s listener threw: %s', name, describeError(err));
  }
}

/** An {@link Emit} that emits on `local` as given and on `neutral` as {@link NEUTRAL} says. */
export function safeEmitter(local: EventEmitter<LocalRunnerEvents>, neutral: EventEmitter<RunnerEvents>): Emit {
  return (name, ...args) => {
    emitSafely(local as EventEmitter, name, args);
    const toNeutral = NEUTRAL[name] as (...a: typeof args) => NeutralEmission[];
    for (const [event, ...rest] of toNeutral(...args)) emitSafely(neutral as EventEmitter, event, rest);
  };
}
