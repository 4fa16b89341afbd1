/**
 * `arvados-dispatch fake-server`: FakeArvados as a process of its own, so
 * that tests in any language (or of the CLI itself) can run a dispatcher
 * against it. It prints one JSON line with what a test needs to connect, then
 * serves until SIGINT, SIGTERM or SIGQUIT. Both tokens are admin tokens: the admin one
 * creates containers (`POST /arvados/v1/containers`) and changes them
 * (`PUT /arvados/v1/containers/{uuid}`) under the server's usual rules.
 *
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeArvados, type FaultOptions } from '../../testing/fake-arvados.js';
import { HELP_OPTION, Options, formatHelp, parseOptions, type OptionTable } from '../args.js';
import { onStopSignals } from '../../dispatcher/signals.js';
import { CliError, ExitCode, UsageError } from '../errors.js';

/** One line for the overall help. */
export const summary = 'serve a fake Arvados API on 127.0.0.1 for tests';

const OPTIONS: OptionTable = {
  port: { type: 'string', metavar: 'N', default: '0: any free port', help: 'port on 127.0.0.1' },
  http: { type: 'boolean', help: 'plain HTTP instead of HTTPS with a fresh self-signed certificate' },
  'cluster-id': { type: 'string', metavar: 'ID', default: 'zzzzz', help: 'five-character cluster id (UUID prefix)' },
  'max-dispatch-attempts': { type: 'string', metavar: 'N', default: '10', help: 'unlocks before an unlock cancels (Containers.MaxDispatchAttempts)' },
  faults: {
    type: 'string',
    metavar: 'JSON',
    help: 'fault injection rules as in FakeArvados: one object or a list, e.g. {"rate":0.3,"kinds":["null-item"],"seed":1}',
  },
  help: HELP_OPTION,
};

/** The `--help` text. */
export function help(): string {
  return formatHelp(
    'arvados-dispatch fake-server [--port N] [--http] [options]',
    'Serves FakeArvados, a fake Arvados API server that follows the real one\'s\n' +
      'container rules, on 127.0.0.1 until SIGINT, SIGTERM or SIGQUIT. Prints one\n' +
      'JSON line: {"apiHost", "insecure", "dispatcherToken", "adminToken", "url",\n' +
      '"clusterId", "caCertFile" (HTTPS only: the self-signed certificate), "pid"}.\n' +
      'Give a dispatcher ARVADOS_API_HOST=apiHost, ARVADOS_API_TOKEN=dispatcherToken\n' +
      'and ARVADOS_API_HOST_INSECURE=1 when insecure is true; drive the containers\n' +
      'with the adminToken: POST /arvados/v1/containers,\n' +
      'PUT /arvados/v1/containers/UUID, GET /arvados/v1/containers/UUID.',
    OPTIONS,
    'Exit status: 0 after SIGINT/SIGTERM/SIGQUIT, 1 if it cannot listen, 2 on a bad command line.',
  );
}

/** The `--faults` value, checked. */
function faultsOption(text: string | undefined): FaultOptions | FaultOptions[] | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UsageError(`--faults: not JSON: ${text}; see 'arvados-dispatch fake-server --help'`);
  }
  const rules = Array.isArray(v) ? v : [v];
  for (const r of rules) {
    if (r === null || typeof r !== 'object' || typeof (r as { rate?: unknown }).rate !== 'number') {
      throw new UsageError(`--faults: each rule must be an object with a numeric "rate"; see 'arvados-dispatch fake-server --help'`);
    }
  }
  return rules as FaultOptions[];
}

/** Resolves at the first stop signal (the Dispatcher's: SIGINT, SIGTERM, SIGQUIT), with its name. */
function untilSignalled(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const off = onStopSignals((sig) => {
      off();
      resolve(sig);
    });
  });
}

/** Runs the command; resolves to the exit status once signalled. */
export async function run(argv: string[]): Promise<number> {
  const opts = new Options(parseOptions(argv, OPTIONS, 'fake-server'), 'fake-server');
  if (opts.flag('help')) {
    process.stdout.write(help());
    return ExitCode.OK;
  }
  const port = opts.integer('port', 0, 0);
  if (port > 65535) throw new UsageError(`--port: ${port} is not a port number; see 'arvados-dispatch fake-server --help'`);
  const clusterId = opts.string('cluster-id') ?? 'zzzzz';
  if (!/^[0-9a-z]{5}$/.test(clusterId)) throw new UsageError(`--cluster-id: "${clusterId}" is not 5 characters [0-9a-z]; see 'arvados-dispatch fake-server --help'`);
  const faults = faultsOption(opts.string('faults'));
  const tls = !opts.flag('http');

  let fake: FakeArvados;
  try {
    fake = new FakeArvados({
      tls,
      port,
      clusterId,
      maxDispatchAttempts: opts.integer('max-dispatch-attempts', 10),
      // A long-lived server must not keep every request it served.
      recordRequests: false,
      faults,
    });
  } catch (err) {
    throw new UsageError(`--faults: ${(err as Error).message}; see 'arvados-dispatch fake-server --help'`);
  }
  // Before listening: a signal between the JSON line and here must not kill the process unannounced.
  const signalled = untilSignalled();
  try {
    await fake.start();
  } catch (err) {
    throw new CliError(`cannot listen on 127.0.0.1:${port}: ${(err as Error).message}`);
  }
  const admin = fake.addToken({ admin: true });
  let certDir: string | undefined;
  let caCertFile: string | undefined;
  if (fake.caCert) {
    certDir = mkdtempSync(join(tmpdir(), 'arvados-dispatch-fake-server-'));
    caCertFile = join(certDir, 'ca.pem');
    writeFileSync(caCertFile, fake.caCert);
  }
  try {
    const info = {
      apiHost: fake.apiHost,
      insecure: tls,
      dispatcherToken: fake.rootToken.token,
      adminToken: admin.token,
      url: fake.url,
      clusterId: fake.clusterId,
      ...(caCertFile ? { caCertFile } : {}),
      pid: process.pid,
    };
    process.stdout.write(`${JSON.stringify(info)}\n`);
    await signalled;
    return ExitCode.OK;
  } finally {
    await fake.stop();
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  }
}
