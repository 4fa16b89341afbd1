/**
 * One `runContainer` call of the local runner: what it knows of its
 * container and crunch-run, shared by the parts that start, follow and
 * stop crunch-run.
 *
 * @module
 */
import type { ChildProcess } from 'node:child_process';
import type { StreamEndReason } from '../../dispatcher/updates.js';
import type { ContainerState } from '../../types.js';
import { Tail } from './output.js';
import type { ResourceNeed } from './resources.js';

/** States in which a container still wants its crunch-run (priority 0 then means cancel). */
export const LIVE = new Set<ContainerState>(['Locked', 'Running']);

/** One `runContainer` call in progress. */
export interface Job {
  readonly uuid: string;
  /** Aborted once the container should stop (priority 0, stream ended, shutdown); `reason` says why. */
  readonly stop: AbortController;
  phase: 'starting' | 'waiting' | 'running' | 'cleanup';
  /** What it needs from the pool, once known, and whether it has it. */
  need?: ResourceNeed;
  allocated: boolean;
  /** The last lines crunch-run wrote to stderr, redacted. */
  readonly stderr: Tail;
  child?: ChildProcess;
  pid?: number;
  /** A crunch-run of an earlier runner, followed by pid (not our child). */
  adopted?: boolean;
  exited: boolean;
  stopping: boolean;
  /** Cancels each pending timer of the job (stop grace periods). */
  timers: Array<() => void>;
  /** Why the updates stream ended, once it has. */
  endReason?: StreamEndReason | 'ended';
}

/** A job that has just been asked to run `uuid`. */
export function newJob(uuid: string): Job {
  return { uuid, stop: new AbortController(), phase: 'starting', allocated: false, stderr: new Tail(), exited: false, stopping: false, timers: [] };
}

/** Cancels the job's pending timers. */
export function clearTimers(job: Job): void {
  for (const cancel of job.timers.splice(0)) cancel();
}
