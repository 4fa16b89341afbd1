/**
 * What is known about one container's batch job, shared by the parts that
 * submit it, follow it in the queue, cancel it and notice it is gone: each
 * decides from the same facts, so none can act on a stale copy.
 *
 * @module
 */
import type { ContainerUpdates } from '../../dispatcher/updates.js';
import type { Container } from '../../types.js';
import type { QueueJob } from './adapter.js';
import type { JobPhase } from './job-context.js';

/** Why a submission step ended without a job. */
export class Interrupted extends Error {
  override name = 'Interrupted';
}

/** The facts about one container's job; see the module. */
export class JobState {
  readonly uuid: string;
  readonly updates: ContainerUpdates;
  /** The newest record of the container. */
  latest: Container;
  /** Aborted on stop: the runner closed, or the dispatcher is stopping. */
  readonly stop = new AbortController();
  /** Aborted when a submission step should give up waiting (stop, or cancel wanted). */
  interrupt: AbortController | undefined;
  phase: JobPhase = 'waiting';

  /** The job was in a snapshot at least once. */
  seen = false;
  /** The submit command accepted it. */
  submitted = false;
  /** The last snapshot listed it. */
  present = false;
  /** We asked for it to be cancelled. */
  cancelRequested = false;
  /** We released the container ourselves (never-clearing reason). */
  released = false;
  /** `Dispatcher.kill` asked for the job to go at once. */
  killed = false;
  /** The scheduler's id of the job, once known. */
  jobId: string | undefined;
  /** The job as the last snapshot that listed it showed it. */
  job: QueueJob | undefined;
  /** Every job of that snapshot named for this container (duplicates are cancelled too). */
  jobs: readonly QueueJob[] = [];

  constructor(container: Container, updates: ContainerUpdates) {
    this.uuid = container.uuid;
    this.latest = container;
    this.updates = updates;
  }

  /** The runner closed or the dispatcher is stopping: the job is left as it is for the next dispatcher. */
  get stopping(): boolean {
    return this.stop.signal.aborted;
  }

  /** Cancel requested in Arvados (priority 0), killed, or the container is no longer ours to run. */
  wantCancel(): boolean {
    const ended = this.updates.endReason;
    return this.killed || (ended !== undefined && ended !== 'stopped') || this.latest.priority === 0;
  }

  /** Locked, ours to run, and no job of ours has ever been seen or accepted for it. */
  needsSubmission(): boolean {
    return !this.seen && !this.submitted && !this.cancelRequested && this.latest.state === 'Locked' && !this.wantCancel();
  }
}
