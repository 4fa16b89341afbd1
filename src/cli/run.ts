/**
 * The command-line interface as a function: picks a command from the table
 * below, runs it with the given I/O, and turns its outcome into an exit
 * status. `main.ts` calls it with the process's streams.
 *
 * @module
 */
import { logger } from '../log.js';
import { BATCH_SYSTEMS } from '../runners/batch/registry.js';
import { CliError, ExitCode, UsageError, errorLine } from './errors.js';
import { packageVersion } from './version.js';

const log = logger('cli');

/** Where the CLI reads and writes: the process's streams and environment, or a test's. */
export interface CliIO {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
  readonly env: NodeJS.ProcessEnv;
}

/** The process's own streams and environment. */
export const PROCESS_IO: CliIO = { stdout: process.stdout, stderr: process.stderr, env: process.env };

/** What each command module exports. */
export interface CommandModule {
  /** One line for the overall help. */
  summary: string;
  /** The command's `--help` text. */
  help(): string;
  /**
   * Runs the command with the arguments after its name; resolves to the
   * exit status. `io` (default the process's) takes its help and parse
   * errors, and gives its environment, where the command supports it.
   */
  run(argv: string[], io?: CliIO): Promise<number>;
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
    'Credentials: the cluster config (--config, $ARVADOS_CONFIG or\n' +
    '/etc/arvados/config.yml); only if it names neither the controller nor the\n' +
    'token, ARVADOS_API_HOST, ARVADOS_API_TOKEN, ARVADOS_API_HOST_INSECURE or\n' +
    '$HOME/.config/arvados/settings.conf (deprecated). The demo needs none.\n' +
    'Details on stderr: DEBUG=arvados-dispatch:*\n' +
    'Exit status: 0 after a clean stop, 1 if it cannot start or run,\n' +
    '2 on a bad command line or configuration.\n'
  );
}

async function dispatch(argv: string[], io: CliIO): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    io.stderr.write(await overallHelp());
    return ExitCode.USAGE;
  }
  if (first === '--help' || first === '-h') {
    io.stdout.write(await overallHelp());
    return ExitCode.OK;
  }
  // -version is the Go services' spelling.
  if (first === '--version' || first === '-version' || first === '-V') {
    io.stdout.write(`arvados-dispatch ${packageVersion()}\n`);
    return ExitCode.OK;
  }
  if (first === 'help') {
    const name = rest[0];
    if (name === undefined) {
      io.stdout.write(await overallHelp());
      return ExitCode.OK;
    }
    const load = COMMANDS[name];
    if (!load) throw new UsageError(`unknown command '${name}'; see 'arvados-dispatch --help'`);
    io.stdout.write((await load()).help());
    return ExitCode.OK;
  }
  const load = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (!load) {
    const what = first.startsWith('-') ? `unknown option '${first}'` : `unknown command '${first}'`;
    throw new UsageError(`${what}; see 'arvados-dispatch --help'`);
  }
  return (await load()).run(rest, io);
}

/**
 * Runs the CLI with `argv` (the arguments after the program name) and
 * resolves to the exit status: 0 clean stop, 1 cannot start or run, 2 bad
 * command line. Errors are one `arvados-dispatch: <reason>` line on
 * `io.stderr`. Tests call it in-process with their own `io`.
 */
export async function run(argv: string[], io: CliIO = PROCESS_IO): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(errorLine(err.message));
      return ExitCode.USAGE;
    }
    if (!(err instanceof CliError)) log('unexpected error: %O', err);
    io.stderr.write(errorLine(err instanceof Error ? err.message : String(err)));
    return ExitCode.FAILURE;
  }
}
