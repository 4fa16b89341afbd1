// The CLI in-process: run(argv, io) in the test's own process, for command
// lines that end before anything starts (help, version, bad flags, bad
// configs). A Node start and the CLI's module loading per case cost more
// than the case itself; the spawned smoke tests keep checking the process.
import { run, type CliIO } from '../../src/cli/run.js';

/** An io that collects what is written, with exactly `env`. */
export function captureIO(env: NodeJS.ProcessEnv = {}): CliIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) }, env, out: () => out, err: () => err };
}

/**
 * Runs the CLI to its exit status, like `runCli` but in this process, with
 * `env` (plus PATH unless given) as its environment. Output a command writes
 * to the process's own streams rather than to `io` (some commands' help and
 * warnings do) is collected too, so that a test sees all of it, as it would
 * from a child.
 */
export async function runInProcess(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = captureIO({ PATH: process.env.PATH ?? '', ...env });
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write };
  const capture = (stream: 'stdout' | 'stderr') =>
    ((chunk: string | Uint8Array) => {
      io[stream].write(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = capture('stdout');
  process.stderr.write = capture('stderr');
  try {
    const code = await run(args, io);
    return { code, stdout: io.out(), stderr: io.err() };
  } finally {
    process.stdout.write = writes.stdout;
    process.stderr.write = writes.stderr;
  }
}
