/**
 * What a {@link LocalRunner} tells its listeners, and how it tells them:
 * a listener that throws must never break a container's run.
 *
 * @module
 */
import type { EventEmitter } from 'node:events';
import { logger } from '../../log.js';
import type { ContainerState } from '../../types.js';
import { describeError } from '../../util/errors.js';
import type { ResourceNeed } from './resources.js';

const log = logger('local');

/** Something the runner decided about a container, for progress displays. */
export interface RunnerNotice {
  uuid: string;
  /** Short reason; for cancellations, the text put into `runtime_status.error`. */
  reason: string;
  /** A one-line log message for operators. */
  message: string;
}

/** Events of a {@link LocalRunner}. */
export interface LocalRunnerEvents {
  /** The container does not fit into what is free now and waits for resources. */
  waiting: [e: { uuid: string; need: ResourceNeed; message: string }];
  /** crunch-run started. */
  started: [e: { uuid: string; pid: number; vcpus: number; ram: number; gpuIds: readonly string[] }];
  /** A line crunch-run wrote. */
  output: [e: { uuid: string; pid: number; stream: 'stdout' | 'stderr'; line: string }];
  /** A signal was sent to crunch-run to stop it. */
  signalled: [e: { uuid: string; pid: number; signal: NodeJS.Signals; reason: string }];
  /** A crunch-run started by an earlier runner (before a restart) still runs for the container; it is followed instead of starting another. */
  adopted: [e: { uuid: string; pid: number }];
  /** crunch-run exited. */
  exited: [e: { uuid: string; pid: number; code: number | null; signal: NodeJS.Signals | null }];
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

/** An {@link Emit} for `emitter` that logs a throwing listener instead of letting it reach the container's run. */
export function safeEmitter(emitter: EventEmitter<LocalRunnerEvents>): Emit {
  return (name, ...args) => {
    try {
      (emitter.emit as (n: typeof name, ...a: typeof args) => boolean).call(emitter, name, ...args);
    } catch (err) {
      log('a %s listener threw: %s', name, describeError(err));
    }
  };
}
