/**
 * Running Slurm's command-line tools: argument arrays only (never a shell),
 * stdout and stderr collected, optional stdin, timeout and abort.
 *
 * sbatch, scancel and scontrol each make an RPC to slurmctld, and a busy
 * controller answers "Socket timed out" when many arrive at once (Arvados
 * #14110), so they share one limiter: at most {@link SLURM_COMMAND_CONCURRENCY}
 * at a time across the whole process. squeue is not limited here: a single
 * poller runs it (see `squeue.ts`).
 *
 * @module
 */
import { spawn } from 'node:child_process';
import PQueue from 'p-queue';
import { logger } from '../../log.js';

const log = logger('slurm:commands');

/** How many sbatch/scancel/scontrol processes may run at once. */
export const SLURM_COMMAND_CONCURRENCY = 3;

/** How long a child gets to exit after SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 5_000;

/** Options of `run` and `spawnCommand` (the Slurm runner's command helpers). */
export interface RunOptions {
  /** Written to the child's stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string;
  /** The child's whole environment (not merged); default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Aborting kills the child (SIGTERM) or, while it waits for a slot, drops it. */
  signal?: AbortSignal;
  /** Kill the child (SIGTERM) after this many milliseconds; default none. */
  timeoutMs?: number;
}

/** How a command ended. */
export interface RunResult {
  /** Exit code; null if a signal killed it. */
  code: number | null;
  /** The signal that killed it, if any. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Something that runs a command like the Slurm runner's `run`; tests substitute fakes. */
export type CommandRunner = (cmd: string, args: readonly string[], options?: RunOptions) => Promise<RunResult>;

/** Rejection of a command that ran past its `timeoutMs` (and was killed). */
export class CommandTimeoutError extends Error {
  override name = 'CommandTimeoutError';
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly timeoutMs: number,
    /** What it had written before it was killed. */
    readonly partial: { stdout: string; stderr: string },
  ) {
    super(`${command} did not finish within ${timeoutMs} ms`);
  }
}

/**
 * Runs `cmd` with `args` directly (no shell), without the shared limiter.
 *
 * Resolves when the process has exited and its output is closed, whatever its
 * exit code. Rejects if it cannot be started (e.g. `ENOENT`), with the
 * signal's reason if aborted, or with {@link CommandTimeoutError}; in the
 * last two cases only after the child has exited, so no process outlives the
 * promise.
 */
export function spawnCommand(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const { input, env, signal, timeoutMs } = options;
  return new Promise<RunResult>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const child = spawn(cmd, [...args], {
      env: env ?? process.env,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    if (input !== undefined && child.stdin) {
      // EPIPE if the child exits without reading everything; its exit status
      // says what went wrong.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    }

    let spawnError: Error | undefined;
    let stopReason: 'abort' | 'timeout' | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const terminate = (reason: 'abort' | 'timeout'): void => {
      if (stopReason) return;
      stopReason = reason;
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    };
    const onAbort = (): void => terminate('abort');
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => terminate('timeout'), timeoutMs);

    child.on('error', (err) => {
      // Also emitted when kill() fails; only a failure to start matters.
      if (child.pid === undefined) spawnError = err;
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      signal?.removeEventListener('abort', onAbort);
      const out = Buffer.concat(stdout).toString('utf8');
      const err = Buffer.concat(stderr).toString('utf8');
      if (spawnError) reject(spawnError);
      else if (stopReason === 'abort') reject(signal?.reason);
      else if (stopReason === 'timeout') {
        reject(new CommandTimeoutError(cmd, args, timeoutMs ?? 0, { stdout: out, stderr: err }));
      } else resolve({ code, signal: sig, stdout: out, stderr: err });
    });
  });
}

/** The limiter shared by every {@link run} call in this process. */
export const slurmCommandQueue = new PQueue({ concurrency: SLURM_COMMAND_CONCURRENCY });

/**
 * `runner` behind the shared limiter, so that at most
 * {@link SLURM_COMMAND_CONCURRENCY} such commands run at once in the
 * process. Aborting while a command waits for a slot rejects without
 * starting it.
 */
export function limited(runner: CommandRunner): CommandRunner {
  return (cmd, args, options: RunOptions = {}) => {
    const { signal } = options;
    // p-queue's `signal` also races the running task and frees its slot at
    // once, before the child has exited. Follow the caller's signal only
    // while queued; once started, the runner handles the abort and holds the
    // slot until the child is gone.
    const whileQueued = new AbortController();
    const forward = (): void => whileQueued.abort(signal?.reason);
    if (signal?.aborted) forward();
    else signal?.addEventListener('abort', forward, { once: true });
    return slurmCommandQueue
      .add(
        () => {
          signal?.removeEventListener('abort', forward);
          log('%s %o', cmd, args);
          return runner(cmd, args, options);
        },
        { signal: whileQueued.signal },
      )
      .finally(() => signal?.removeEventListener('abort', forward));
  };
}

/**
 * Runs a Slurm command (sbatch, scancel, scontrol…) through the shared
 * limiter: {@link spawnCommand} behind {@link limited}.
 *
 * @example
 * const { code, stderr } = await run('scontrol', ['update', `JobName=${uuid}`, 'Nice=0']);
 */
export const run: CommandRunner = limited(spawnCommand);

/** The job ID in sbatch's "Submitted batch job 123" (also with `--parsable`). */
export function parseSbatchJobId(stdout: string): number | undefined {
  const m = /^(?:Submitted batch job )?(\d+)(?:;\S+)?\s*$/m.exec(stdout.trim());
  return m ? Number(m[1]) : undefined;
}

/** Options of {@link SlurmCli.sbatch}. */
export interface SbatchOptions {
  /** sbatch's environment, which it passes on to the job (`--export=ALL`). */
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** The Slurm commands a runner needs, over an injectable {@link CommandRunner}. */
export interface SlurmCli {
  /** `sbatch <args>` with `script` on stdin. */
  sbatch(args: readonly string[], script: string, options?: SbatchOptions): Promise<RunResult>;
  /**
   * Cancels the jobs named `name`: removes a pending one; sends SIGTERM to the
   * batch step of a running or suspended one (never SIGKILL, so crunch-run
   * can stop its container; Arvados #12891). scancel exits 0 when nothing
   * matches, so a non-zero result is a real failure; the first one is returned.
   */
  scancel(name: string, options?: { signal?: AbortSignal }): Promise<RunResult>;
  /** `scontrol update JobName=<name> Nice=<nice>`; exits 1 if no such job exists. */
  renice(name: string, nice: number, options?: { signal?: AbortSignal }): Promise<RunResult>;
}

/** A {@link SlurmCli} on `runner` (default: the shared, limited {@link run}). */
export function slurmCli(runner: CommandRunner = run): SlurmCli {
  return {
    sbatch: (args, script, options = {}) => runner('sbatch', args, { ...options, input: script }),
    async scancel(name, options = {}) {
      let last: RunResult | undefined;
      for (const extra of [
        ['--state=pending'],
        ['--batch', '--signal=TERM', '--state=running'],
        ['--batch', '--signal=TERM', '--state=suspended'],
      ]) {
        last = await runner('scancel', [`--name=${name}`, ...extra], options);
        if (last.code !== 0) return last;
      }
      return last as RunResult;
    },
    renice: (name, nice, options = {}) =>
      runner('scontrol', ['update', `JobName=${name}`, `Nice=${nice}`], options),
  };
}
