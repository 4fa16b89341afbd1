/**
 * One container's life in Slurm: submit it (once), follow its job in the
 * squeue snapshots, keep its priority, cancel it, and notice when it is gone.
 *
 * @module
 */
import { createHmac } from 'node:crypto';
import { sleep } from '../../util/sleep.js';
import type { Dispatcher } from '../../dispatcher/dispatcher.js';
import type { ContainerUpdates } from '../../dispatcher/updates.js';
import { logger } from '../../log.js';
import type { Container } from '../../types.js';
import type { RunResult, SlurmCli } from './commands.js';
import { parseSbatchJobId } from './commands.js';
import { classifySbatchFailure, type SbatchFailureKind } from './errors.js';
import type { GateOutcome, GateTicket, SubmitGate } from './gate.js';
import { slurmWantPriority } from './nice.js';
import type { ResolvedSlurmOptions } from './options.js';
import type { Renicer } from './renicer.js';
import type { ScancelBatcher } from './scancel.js';
import { batchScript } from './script.js';
import type { SqueueJob, SqueueMonitor, SqueueSnapshot } from './squeue.js';
import { sbatchArgs } from './template.js';

const log = logger('slurm:job');

/** Variables of this process's environment that sbatch (and so the job) gets. */
const PASSED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'SLURM_CONF'];
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What happened to a container whose job left the queue without being cancelled by us. */
export interface LostJob {
  uuid: string;
  /** The container's state when it was found lost. */
  state: 'Locked' | 'Running';
  /** What the runner did about it. */
  action: 'cancelled' | 'unlocked';
  /** Successful squeue runs in a row that did not list the job. */
  misses: number;
  /** Milliseconds from the first of those to the decision. */
  ms: number;
  /** The text written to the container's log (and `runtime_status.error` if it was Running). */
  reason: string;
}

/** What a {@link SlurmJob} uses of its runner. */
export interface JobContext {
  readonly options: ResolvedSlurmOptions;
  readonly monitor: SqueueMonitor;
  readonly gate: SubmitGate;
  readonly scancel: ScancelBatcher;
  readonly renicer: Renicer;
  /** sbatch through the shared limiter. */
  readonly cli: SlurmCli;
  /** Aborted when the runner closes. */
  readonly closed: AbortSignal;
  warn(message: string): void;
  submitted(uuid: string, jobId: number | undefined): void;
  lost(info: LostJob): void;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The first line of a command's complaint, for messages. */
function complaint(r: RunResult | Error): string {
  if (r instanceof Error) return r.message;
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const last = lines.filter((l) => /submission failed|error/i.test(l)).pop() ?? lines.pop();
  return last ?? (r.code === null ? `killed by ${r.signal}` : `exit status ${r.code}`);
}

/** Why a submission step ended without a job. */
class Interrupted extends Error {
  override name = 'Interrupted';
}

/**
 * Runs one container through Slurm; created by the runner for each
 * `runContainer` call. {@link run} resolves when there is nothing left to
 * watch, and rejects only when sbatch failed for good (the dispatcher then
 * logs the error and unlocks the container).
 */
export class SlurmJob {
  readonly uuid: string;
  readonly #ctx: JobContext;
  readonly #d: Dispatcher;
  readonly #updates: ContainerUpdates;
  #latest: Container;
  /** Aborted on stop: the runner closed, or the dispatcher is stopping. */
  readonly #stop = new AbortController();
  /** Aborted when a submission step should give up waiting (stop, or cancel wanted). */
  #interrupt: AbortController | undefined;

  /** The job was in a snapshot at least once. */
  #seen = false;
  /** sbatch accepted it. */
  #submitted = false;
  /** The last snapshot listed it. */
  #present = false;
  /** We asked scancel to remove it. */
  #cancelRequested = false;
  #failedAttempts = 0;
  #misses = 0;
  #firstMissAt = 0;
  #args: string[] | undefined;

  constructor(ctx: JobContext, d: Dispatcher, container: Container, updates: ContainerUpdates) {
    this.uuid = container.uuid;
    this.#ctx = ctx;
    this.#d = d;
    this.#latest = container;
    this.#updates = updates;
  }

  /** Follows the container until its job is gone (or the dispatcher stops). */
  async run(): Promise<void> {
    const onClosed = (): void => this.#stop.abort(this.#ctx.closed.reason);
    const onEnded = (): void => {
      if (this.#updates.endReason === 'stopped') this.#stop.abort(new Error('dispatcher stopping'));
      this.#changed();
    };
    if (this.#ctx.closed.aborted) onClosed();
    else this.#ctx.closed.addEventListener('abort', onClosed, { once: true });
    if (this.#updates.signal.aborted) onEnded();
    else this.#updates.signal.addEventListener('abort', onEnded, { once: true });
    const pump = this.#pump();
    try {
      await this.#loop();
    } finally {
      this.#ctx.closed.removeEventListener('abort', onClosed);
      this.#updates.signal.removeEventListener('abort', onEnded);
      this.#ctx.renicer.delete(this.uuid);
      this.#ctx.scancel.forget(this.uuid);
      this.#interrupt?.abort();
      // The pump ends when the dispatcher ends the stream after we return.
      void pump;
    }
  }

  // ---- state ----------------------------------------------------------------

  get #stopping(): boolean {
    return this.#stop.signal.aborted;
  }

  /** Cancel requested in Arvados (priority 0), or the container is no longer ours to run. */
  #wantCancel(): boolean {
    const ended = this.#updates.endReason;
    return (ended !== undefined && ended !== 'stopped') || this.#latest.priority === 0;
  }

  async #pump(): Promise<void> {
    for await (const c of this.#updates) {
      this.#latest = c;
      this.#changed();
    }
  }

  /** A newer record arrived, or the stream ended. */
  #changed(): void {
    if (this.#stopping) {
      this.#interrupt?.abort(new Interrupted('stopping'));
      return;
    }
    if (this.#wantCancel()) {
      this.#interrupt?.abort(new Interrupted('cancel wanted'));
      // Don't wait for the next snapshot to start cancelling a job we know is there.
      if (this.#present) this.#requestCancel();
    } else if (this.#present) {
      this.#ctx.renicer.setWant(this.uuid, slurmWantPriority(this.#latest));
    }
  }

  /** Asks for a scancel; `seenAt` is the start of the squeue run that showed the job, if one prompted this. */
  #requestCancel(seenAt?: number): void {
    if (!this.#cancelRequested) log('cancelling the Slurm job of %s (%s)', this.uuid, this.#cancelWhy());
    this.#cancelRequested = true;
    this.#ctx.renicer.delete(this.uuid);
    this.#ctx.scancel.cancel(this.uuid, seenAt);
  }

  #cancelWhy(): string {
    const ended = this.#updates.endReason;
    return ended ? `updates ended: ${ended}` : 'priority 0';
  }

  #onPresent(job: SqueueJob, snap: SqueueSnapshot): void {
    this.#seen = true;
    this.#present = true;
    this.#misses = 0;
    if (this.#wantCancel()) this.#requestCancel(snap.startedAt);
    else this.#ctx.renicer.setWant(this.uuid, slurmWantPriority(this.#latest));
    log('%s: %s %s (nice %d)', this.uuid, job.state, job.reason, job.nice);
  }

  // ---- the loop -------------------------------------------------------------

  async #loop(): Promise<void> {
    for (;;) {
      if (this.#stopping) return;
      if (this.#needsSubmission()) {
        if ((await this.#submitStep()) === 'done') return;
        continue;
      }
      let snap: SqueueSnapshot;
      try {
        snap = await this.#ctx.monitor.nextSnapshot(this.#stop.signal);
      } catch (err) {
        if (this.#stopping) return;
        throw err;
      }
      if (this.#stopping) return;
      const job = snap.jobs.get(this.uuid);
      if (job) {
        this.#onPresent(job, snap);
        continue;
      }
      this.#present = false;
      // Gone after we cancelled it, or there is nothing to cancel: done.
      if (this.#cancelRequested || this.#wantCancel()) return;
      // Submitted or seen before, or adopted as Running: it left on its own.
      if (this.#misses++ === 0) this.#firstMissAt = snap.startedAt;
      const ms = Date.now() - this.#firstMissAt;
      const grace = this.#ctx.options.vanishGrace;
      log('%s: not in the queue (%d miss(es), %d ms)', this.uuid, this.#misses, ms);
      if (this.#misses >= grace.misses && ms >= grace.ms && (await this.#declareLost(ms))) return;
    }
  }

  /** Locked, ours to run, and no job of ours has ever been seen or accepted for it. */
  #needsSubmission(): boolean {
    return !this.#seen && !this.#submitted && !this.#cancelRequested && this.#latest.state === 'Locked' && !this.#wantCancel();
  }

  /**
   * One round of submission: wait for the back-pressure gate, check a fresh
   * snapshot, and run sbatch only if the job is not there. Every sbatch is
   * preceded by its own fresh snapshot, so a submission that failed on our
   * side but reached Slurm is found instead of duplicated.
   */
  async #submitStep(): Promise<'again' | 'done'> {
    const interrupt = new AbortController();
    this.#interrupt = interrupt;
    const signal = interrupt.signal;
    const onStop = (): void => interrupt.abort(new Interrupted('stopping'));
    this.#stop.signal.addEventListener('abort', onStop, { once: true });
    let ticket: GateTicket | undefined;
    let outcome: GateOutcome = 'other';
    try {
      if (this.#stopping || this.#wantCancel()) return 'again';
      ticket = await this.#ctx.gate.enter(signal);
      const snap = await this.#ctx.monitor.nextSnapshot(signal);
      const job = snap.jobs.get(this.uuid);
      if (job) {
        this.#onPresent(job, snap);
        return 'again';
      }
      if (this.#failedAttempts > 0 && !(await this.#stillOurs(signal))) return 'done';
      if (signal.aborted) return 'again';

      const result = await this.#sbatch();
      if (!(result instanceof Error) && result.code === 0) {
        outcome = 'submitted';
        this.#submitted = true;
        const jobId = parseSbatchJobId(result.stdout);
        log('submitted %s as job %s', this.uuid, jobId ?? '(unknown id)');
        if (result.stderr.trim()) log('sbatch for %s said: %s', this.uuid, result.stderr.trim());
        this.#ctx.submitted(this.uuid, jobId);
        return 'again';
      }
      const kind = classifySbatchFailure(result);
      outcome = kind === 'backpressure' ? 'backpressure' : 'other';
      this.#failedAttempts++;
      ticket.done(outcome);
      return await this.#afterFailure(kind, result, signal);
    } catch (err) {
      if (signal.aborted) return 'again';
      throw err;
    } finally {
      ticket?.done(outcome);
      this.#stop.signal.removeEventListener('abort', onStop);
      if (this.#interrupt === interrupt) this.#interrupt = undefined;
    }
  }

  async #afterFailure(kind: SbatchFailureKind, result: RunResult | Error, signal: AbortSignal): Promise<'again' | 'done'> {
    const what = `sbatch for container ${this.uuid} failed (${kind}): ${complaint(result)}`;
    if (kind === 'fatal') {
      // An sbatch that could not even be started submitted nothing.
      const code = result instanceof Error ? (result as NodeJS.ErrnoException).code : undefined;
      if (code === 'ENOENT' || code === 'EACCES') throw new Error(`sbatch failed: ${complaint(result)}`);
      // Otherwise it may have reached Slurm all the same (e.g. the answer
      // was lost): look before giving up. Cancel-wanted does not interrupt
      // this, since a job found here may need cancelling.
      const snap = await this.#ctx.monitor.nextSnapshot(this.#stop.signal);
      const job = snap.jobs.get(this.uuid);
      if (job) {
        log('%s; but the job is in the queue, so following it', what);
        this.#submitted = true;
        this.#onPresent(job, snap);
        return 'again';
      }
      throw new Error(`sbatch failed: ${complaint(result)}`);
    }
    if (kind === 'backpressure') {
      // The gate is paused now; the next round waits there.
      log('%s; waiting for room in the queue', what);
      return 'again';
    }
    const delay = this.#backoff();
    this.#ctx.warn(`${what}; retrying in ${Math.round(delay)} ms`);
    await sleep(delay, signal);
    return 'again';
  }

  #backoff(): number {
    const { initialDelay, maxDelay, factor } = this.#ctx.options.submitRetry;
    const full = Math.min(maxDelay, initialDelay * factor ** Math.min(this.#failedAttempts - 1, 64));
    return full / 2 + (Math.random() * full) / 2;
  }

  /** Before submitting again: the API still shows the container Locked by us, wanting to run. */
  async #stillOurs(signal: AbortSignal): Promise<boolean> {
    let fresh: Container;
    try {
      fresh = await this.#d.client.getContainer(this.uuid, { signal });
    } catch (err) {
      if (signal.aborted) throw err;
      // Unknown: keep trying, as for a Slurm failure.
      this.#failedAttempts++;
      const delay = this.#backoff();
      this.#ctx.warn(`could not check container ${this.uuid} before submitting it again: ${describe(err)}; retrying in ${Math.round(delay)} ms`);
      await sleep(delay, signal);
      return this.#stillOurs(signal);
    }
    const mine = fresh.state === 'Locked' && fresh.locked_by_uuid === this.#d.auth?.uuid && fresh.priority > 0;
    if (!mine) log('not submitting %s again: it is %s, priority %d, locked by %s', this.uuid, fresh.state, fresh.priority, fresh.locked_by_uuid);
    return mine;
  }

  async #sbatch(): Promise<RunResult | Error> {
    const o = this.#ctx.options;
    // Template errors are the administrator's, and fatal: let them throw.
    this.#args ??= this.#sbatchArgs();
    const argv = [o.crunchRunCommand, ...o.crunchRunArgs, ...(o.runtimeEngine ? [`--runtime-engine=${o.runtimeEngine}`] : []), this.uuid];
    try {
      return await this.#ctx.cli.sbatch(this.#args, batchScript(argv), { env: this.#environment(), timeoutMs: o.commandTimeout });
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  /** `--nice=10000 --no-requeue`, the output location, then the templates (which may override it). */
  #sbatchArgs(): string[] {
    const o = this.#ctx.options;
    const args = sbatchArgs(this.#latest, { args: o.sbatchArgs, gpuArgs: o.sbatchGpuArgs, reserveExtraRam: o.reserveExtraRam });
    if (o.jobOutputDir === null) return args;
    const dir = o.jobOutputDir;
    // sbatch expands %-patterns in --output (not in --chdir): keep the directory's own % literal.
    const output = `--output=${dir === '/' ? '' : dir.replaceAll('%', '%%')}/crunch-run-%x-%j.out`;
    return [...args.slice(0, 2), `--chdir=${dir}`, output, ...args.slice(2)];
  }

  /**
   * sbatch's environment, which it exports to the job: credentials reach
   * crunch-run this way, never through the script (which slurmctld stores)
   * or the command line (which `ps` shows).
   */
  #environment(): NodeJS.ProcessEnv {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (v !== undefined && (PASSED_ENV.includes(k) || k.startsWith('SBATCH_'))) env[k] = v;
    }
    env.PATH ??= DEFAULT_PATH;
    Object.assign(env, this.#ctx.options.environment);
    const credentials = this.#d.client.credentialsEnv();
    Object.assign(env, credentials);
    // What the controller expects from crunch-run's container gateway.
    env.GatewayAuthSecret = createHmac('sha256', credentials.ARVADOS_API_TOKEN).update(this.uuid).digest('hex');
    return env;
  }

  // ---- a job that left the queue --------------------------------------------

  /**
   * The job has been missing for the whole grace period. On a fresh record,
   * a container still Running for us is cancelled and a Locked one is
   * unlocked, with the reason in its log. Returns false if the API could not
   * be asked or told (try again after the next snapshot).
   */
  async #declareLost(ms: number): Promise<boolean> {
    const signal = this.#stop.signal;
    let fresh: Container;
    try {
      fresh = await this.#d.client.getContainer(this.uuid, { signal });
    } catch (err) {
      if (this.#stopping) return true;
      this.#ctx.warn(`container ${this.uuid}: its Slurm job is gone, but getting its record failed (will retry): ${describe(err)}`);
      return false;
    }
    if (fresh.locked_by_uuid !== this.#d.auth?.uuid || (fresh.state !== 'Locked' && fresh.state !== 'Running')) {
      log('%s: job gone, container %s (locked by %s): nothing to do', this.uuid, fresh.state, fresh.locked_by_uuid);
      return true;
    }
    const state = fresh.state;
    const reason =
      `The Slurm job for container ${this.uuid} left the queue without being cancelled by the dispatcher ` +
      `(missing from ${this.#misses} squeue listings over ${Math.round(ms / 1000)} s) while the container was ${state}` +
      (state === 'Running' ? '; cancelling the container.' : '; unlocking it so it can be dispatched again.');
    const action = state === 'Running' ? 'cancelled' : 'unlocked';
    try {
      if (state === 'Running') {
        const status = fresh.runtime_status ?? {};
        const runtime_status = typeof status.error === 'string' && status.error !== '' ? status : { ...status, error: reason };
        await this.#d.client.updateContainer(this.uuid, { state: 'Cancelled', runtime_status }, { signal });
      } else {
        await this.#d.client.unlockContainer(this.uuid, { signal });
      }
    } catch (err) {
      if (this.#stopping) return true;
      this.#ctx.warn(`container ${this.uuid}: its Slurm job is gone, but it could not be ${action} (will retry): ${describe(err)}`);
      return false;
    }
    this.#ctx.warn(reason);
    await this.#d.client
      .createLog({ object_uuid: this.uuid, event_type: 'dispatch', properties: { text: reason } }, { signal })
      .catch((err: unknown) => log('could not log the loss of %s: %s', this.uuid, describe(err)));
    this.#ctx.lost({ uuid: this.uuid, state, action, misses: this.#misses, ms, reason });
    return true;
  }
}
