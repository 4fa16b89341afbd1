/**
 * Running a batch system's command-line tools: argument arrays only (never a
 * shell), stdout and stderr collected, optional stdin, timeout and abort.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import type { RunResult } from './adapter.js';

export type { RunResult } from './adapter.js';

/** How long a child gets to exit after SIGTERM before SIGKILL. */
const KILL_GRACE_MS = 5_000;

/** Options of a {@link CommandRunner} such as {@link spawnCommand}. */
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

/**
 * Something that runs a command like {@link spawnCommand}: a batch runner's
 * `runner` option, which tests (or a wrapper that logs or runs remotely)
 * substitute. It should reject with {@link CommandTimeoutError} on a timeout,
 * which counts as a transient failure.
 */
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
 * Runs `cmd` with `args` directly (no shell), without any limiter.
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

