#!/usr/bin/env node
/**
 * `arvados-dispatch`: the command-line entry point. Runs the CLI
 * (`run.ts`) with the process's streams and environment and sets the exit
 * status: 0 clean stop, 1 cannot start or run, 2 bad command line.
 *
 * The process exits by itself once a command returns (no `process.exit`
 * here), so everything written is flushed first.
 *
 * @module
 */
import { run } from './run.js';

export type { CliIO, CommandModule } from './run.js';

// A reader that went away (`arvados-dispatch local | head`) must not crash
// the dispatcher and orphan its crunch-run processes; stop printing instead.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});

void run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
