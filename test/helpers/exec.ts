// Asynchronous command runs for tests: a synchronous spawn blocks the event
// loop, and with it the dispatcher or runner under test in the same process.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

/** `execFile` as a promise: rejects on a non-zero exit, with `stdout`/`stderr` on the error. */
export const execFileP = promisify(execFile);

/** Runs `cmd` with `input` on its standard input; resolves with its exit code and output (never rejects on a non-zero exit). */
export function runWithInput(
  cmd: string,
  args: readonly string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    // A command may exit without reading its input; that is its answer, not an error.
    child.stdin?.on('error', () => {});
    child.stdin?.end(opts.input);
  });
}
