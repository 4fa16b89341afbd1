/**
 * What every dispatching command (`local`, `slurm`, `lsf`, `sge`) does the
 * same way: read the command line, then connect, create the Dispatcher,
 * announce the start, serve the management API and run the session until a
 * stop. Each command adds only its runner and what it prints about it.
 *
 * @module
 */
import type { ArvadosClient } from '../client/client.js';
import { Dispatcher } from '../dispatcher/dispatcher.js';
import type { Runner } from '../dispatcher/runner.js';
import { parseCommandLine, type OptionTable, type Options } from './args.js';
import { PROCESS_IO, type CliIO } from './run.js';
import { resolveCredentials, type ResolvedCredentials } from './credentials.js';
import { apiClientFromEnv, checkReachable, dispatcherSettings } from './dispatching.js';
import { ExitCode } from './errors.js';
import { Output } from './output.js';
import type { Reporter } from './report.js';
import { managementSettings, startService, type ManagementSettings } from './service.js';
import { runSession, type SessionRunner } from './session.js';
import { guardCluster } from './cluster-guard.js';
import { SystemdNotifier } from './systemd.js';

/** The command line of a dispatching command, read before anything else happens. */
export interface CommandStart {
  /** The parsed flags (and config values). */
  opts: Options;
  /** The Dispatcher's own settings from `DISPATCHER_OPTIONS`. */
  settings: ReturnType<typeof dispatcherSettings>;
  /** Ms between status lines (`--status-interval`). */
  statusInterval: number;
  /** Where to serve the management API, if anywhere. */
  management: ManagementSettings | undefined;
  /** The API credentials (cluster config, else the deprecated environment fallback) and the SystemRootToken. */
  credentials: ResolvedCredentials;
}

/**
 * Parses `argv` against `table`. With `--help`, prints `help()` and returns
 * undefined: the command is done.
 *
 * @throws UsageError for a bad flag.
 */
export function beginCommand(argv: string[], table: OptionTable, command: string, help: () => string, io: CliIO = PROCESS_IO): CommandStart | undefined {
  const opts = parseCommandLine(argv, table, command, io.env);
  if (opts.flag('help')) {
    io.stdout.write(help());
    return undefined;
  }
  const settings = dispatcherSettings(opts);
  const statusInterval = opts.duration('status-interval', 30_000);
  return { opts, settings, statusInterval, management: managementSettings(opts), credentials: resolveCredentials(opts) };
}

/** The command's output (text or `--json`), with the notes parsing left (deprecated flags...) printed as warnings. */
export function commandOutput(opts: Options, secrets: readonly string[] = []): Output {
  const out = new Output({ json: opts.flag('json') });
  for (const s of secrets) out.addSecret(s);
  for (const note of opts.notes) out.warn(note);
  return out;
}

/** How a command presents its runner, once the Dispatcher exists. */
export interface Presentation {
  /** How the session stops the runner and what it says about it. */
  session: SessionRunner;
  /** Prints the Dispatcher's and the runner's events. */
  reporter: Reporter;
  /** The `start` event: its text line and its JSON fields. */
  start: { text: string; fields: Record<string, unknown> };
}

/** Options of {@link serveDispatcher}. */
export interface ServeOptions {
  /** The runner, already built (so that a bad option fails before any connection). */
  runner: Runner;
  /** How long the Dispatcher waits for its runners on stop. */
  shutdownTimeout: number;
  /** What the command prints, given the Dispatcher and the API client. */
  present(d: Dispatcher, client: ArvadosClient): Presentation;
  /**
   * More conditions for readiness (systemd's `READY=1`), besides the token
   * being identified and the management listener being up: e.g. a cluster
   * lock being held. Each resolves when its condition holds; a rejection
   * means never ready.
   */
  readyGates?: ReadonlyArray<(d: Dispatcher) => Promise<void>>;
}

/** Ms without a completed poll cycle after which the watchdog stops pinging (besides two poll intervals). */
const WATCHDOG_SLACK = 60_000;

/**
 * Resolves once `d` has identified its token (rejects if it stops first):
 * the first readiness condition.
 */
export function identified(d: Dispatcher): Promise<void> {
  if (d.auth) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const onId = (): void => {
      d.off('stopping', onStop);
      resolve();
    };
    const onStop = (): void => {
      d.off('identified', onId);
      reject(new Error('stopped before identifying its token'));
    };
    d.once('identified', onId);
    d.once('stopping', onStop);
  });
}

/**
 * Connects to the API (one clear line if it is unreachable), runs a
 * Dispatcher with `runner` until a stop signal, then closes the runner and
 * the management API. Resolves to the exit status.
 */
export async function serveDispatcher(start: CommandStart, out: Output, o: ServeOptions): Promise<number> {
  const { opts, settings, credentials } = start;
  const client = apiClientFromEnv(out, opts, process.env, credentials);
  await checkReachable(client);
  const d = new Dispatcher({ client, runner: o.runner, ...settings, secondSignal: 'exit', shutdownTimeout: o.shutdownTimeout });
  // Once the token works: a start that fails says one line, not warnings first.
  d.once('identified', () => {
    for (const w of credentials.warnings) out.warn(w, {}, 'credentials');
  });
  const { session, reporter, start: announce } = o.present(d, client);
  out.event('start', announce.text, announce.fields);
  if (settings.supervisorFraction && settings.maxJobs === undefined) {
    out.warn('--supervisor-fraction (SupervisorFraction) has no effect without --max-jobs: there is no count to take a fraction of');
  }
  const guard = guardCluster(opts, out, d);
  const service = start.management ? await startService(start.management, out, d, settings.pollInterval, { config: opts.config?.source }) : undefined;
  const notifier = new SystemdNotifier({ warn: (m) => out.warn(m) });
  let lastCycle = Date.now();
  d.on('cycle', () => (lastCycle = Date.now()));
  // The watchdog is fed while the poll loop completes cycles (healthy or not: an API outage is not cured by a restart).
  const alive = (): boolean => Date.now() - lastCycle < 2 * settings.pollInterval + WATCHDOG_SLACK;
  d.once('stopping', () => notifier.stopping());
  // The listener is up (startService returned); the token and any other gate must hold too.
  Promise.all([identified(d), guard.ready, ...(o.readyGates ?? []).map((g) => g(d))]).then(
    () => notifier.ready(alive),
    () => {},
  );
  try {
    await runSession({ out, dispatcher: d, runner: session, reporter, statusInterval: start.statusInterval });
  } finally {
    await service?.close();
    await guard.close();
    await notifier.close();
  }
  return ExitCode.OK;
}
