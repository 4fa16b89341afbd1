/**
 * The behaviour list's failing submit command, answered in-process: where
 * the runner is given a submit command in a `failing-*` directory (the
 * wrapper `defineBatchBehaviour` writes, which submits and then fails), an
 * in-process stand-in submits the job and answers with that failure.
 */
import { basename, dirname } from 'node:path';
import type { CommandRunner } from '../../../src/runners/batch/commands.js';

/** `runner`, with `submit` run from a `failing-*` directory answered as a failure after submitting. */
export function withFailingSubmit(runner: CommandRunner, submit: string): CommandRunner {
  return async (cmd, args, options) => {
    const r = await runner(cmd, args, options);
    if (basename(cmd) !== submit || !basename(dirname(cmd)).startsWith('failing-')) return r;
    return { ...r, code: 1, stderr: `${r.stderr}error: lost the answer after submitting\n` };
  };
}
