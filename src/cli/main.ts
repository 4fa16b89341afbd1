#!/usr/bin/env node
/**
 * `arvados-dispatch`: the command-line entry point. Picks a command from
 * the table below, runs it, and turns its outcome into an exit status:
 * 0 clean stop, 1 cannot start or run, 2 bad command line. Errors are one
 * `arvados-dispatch: <reason>` line on stderr.
 *
 * The process exits by itself once a command returns (no `process.exit`
 * here), so everything written is flushed first.
 *
 * @module
 */
import { logger } from '../log.js';
import { BATCH_SYSTEMS } from '../runners/batch/registry.js';
import { CliError, ExitCode, UsageError, errorLine } from './errors.js';
import { packageVersion } from './version.js';

const log = logger('cli');

/** What each command module exports. */
export interface CommandModule {
  /** One line for the overall help. */
  summary: string;
  /** The command's `--help` text. */
  help(): string;
  /** Runs the command with the arguments after its name; resolves to the exit status. */
  run(argv: string[]): Promise<number>;
}

/**
 * The commands, loaded on demand so that one command's imports (e.g. the
 * demo's fake API server) cost nothing to the others. To add a command, add
 * a module under `commands/` exporting {@link CommandModule} and a line here;
 * a batch system is a descriptor in `runners/batch/registry.ts` instead.
 */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  local: () => import('./commands/local.js'),
  // One generic command per batch system of the registry.
  ...Object.fromEntries(BATCH_SYSTEMS.map((sys) => [sys.name, () => import('./batch-command.js').then((m) => m.batchCommand(sys))])),
  demo: () => import('./commands/demo.js'),
  'fake-server': () => import('./commands/fake-server.js'),
};

async function overallHelp(): Promise<string> {
  const rows: string[] = [];
  for (const [name, load] of Object.entries(COMMANDS)) rows.push(`  ${`${name} `.padEnd(8)}${(await load()).summary}`);
  return (
    'Usage: arvados-dispatch <command> [options]\n' +
    '       arvados-dispatch <command> --help\n' +
    '       arvados-dispatch --version | -version | --help\n\n' +
    'Dispatches Arvados containers: polls the API for queued containers, locks them\n' +
    'and runs them.\n\n' +
    `Commands:\n${rows.join('\n')}\n\n` +
    'Credentials: ARVADOS_API_HOST, ARVADOS_API_TOKEN, ARVADOS_API_HOST_INSECURE, else\n' +
    'the cluster config (--config, $ARVADOS_CONFIG or /etc/arvados/config.yml), else\n' +
    '$HOME/.config/arvados/settings.conf (the demo needs none).\n' +
    'Details on stderr: DEBUG=arvados-dispatch:*\n' +
    'Exit status: 0 after a clean stop, 1 if it cannot start or run,\n' +
    '2 on a bad command line or configuration.\n'
  );
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    process.stderr.write(await overallHelp());
    return ExitCode.USAGE;
  }
  if (first === '--help' || first === '-h') {
    process.stdout.write(await overallHelp());
    return ExitCode.OK;
  }
  // -version is the Go services' spelling.
  if (first === '--version' || first === '-version' || first === '-V') {
    process.stdout.write(`arvados-dispatch ${packageVersion()}\n`);
    return ExitCode.OK;
  }
  if (first === 'help') {
    const name = rest[0];
    if (name === undefined) {
      process.stdout.write(await overallHelp());
      return ExitCode.OK;
    }
    const load = COMMANDS[name];
    if (!load) throw new UsageError(`unknown command '${name}'; see 'arvados-dispatch --help'`);
    process.stdout.write((await load()).help());
    return ExitCode.OK;
  }
  const load = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (!load) {
    const what = first.startsWith('-') ? `unknown option '${first}'` : `unknown command '${first}'`;
    throw new UsageError(`${what}; see 'arvados-dispatch --help'`);
  }
  return (await load()).run(rest);
}

// A reader that went away (`arvados-dispatch local | head`) must not crash
// the dispatcher and orphan its crunch-run processes; stop printing instead.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(errorLine(err.message));
      process.exitCode = ExitCode.USAGE;
      return;
    }
    if (!(err instanceof CliError)) log('unexpected error: %O', err);
    process.stderr.write(errorLine(err instanceof Error ? err.message : String(err)));
    process.exitCode = ExitCode.FAILURE;
  },
);
