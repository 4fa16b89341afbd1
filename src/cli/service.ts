/**
 * Running as a service: the management listener's settings (from
 * `--listen` / `--management-token-file` or the cluster config), checked at
 * startup, and the listener itself with its metrics and health monitor
 * wired to the Dispatcher.
 *
 * @module
 */
import { describeError } from '../util/errors.js';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import type { Dispatcher } from '../dispatcher/dispatcher.js';
import { HealthMonitor } from '../server/health.js';
import { ManagementServerError, startManagementServer, type ManagementServer } from '../server/management.js';
import { DispatchMetrics } from '../server/metrics.js';
import { observeDispatcher } from '../server/observe.js';
import { registerVersionMetrics, type ConfigSourceInfo } from '../server/version-metrics.js';
import type { Options } from './args.js';
import { MANAGEMENT_TOKEN, TLS_CERTIFICATE, TLS_KEY, type ListenAddress } from './config.js';
import { CliError, UsageError } from './errors.js';
import type { Output } from './output.js';
import { packageVersion } from './version.js';

/** Where and with which token the management listener runs. */
export interface ManagementSettings {
  /** Addresses to try in order. */
  listen: ListenAddress[];
  /** Undefined: no ManagementToken; every request is answered 404 `disabled`, as the Go services do. */
  token: string | undefined;
  /** The certificate and key (PEM) for `https://` addresses. */
  tls?: { cert: Buffer; key: Buffer };
}

/**
 * Parses `HOST:PORT`, `:PORT` (every interface), `[::1]:PORT` or an
 * `http://HOST:PORT/` or `https://HOST:PORT/` URL (TLS with the config's
 * certificate).
 *
 * @throws RangeError naming the bad text.
 */
export function parseListen(text: string): ListenAddress {
  const t = text.trim();
  let host: string;
  let port: string;
  const url = /^https?:\/\//i.test(t);
  if (url) {
    let u: URL;
    try {
      u = new URL(t);
    } catch {
      throw new RangeError(`"${text}" is not HOST:PORT`);
    }
    host = u.hostname;
    port = u.port || (u.protocol === 'https:' ? '443' : '80');
  } else {
    const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(t);
    if (!m) throw new RangeError(`"${text}" is not HOST:PORT (e.g. 127.0.0.1:9005, :9005, [::1]:9005)`);
    host = m[1] ?? m[2];
    port = m[3];
  }
  const n = Number(port);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new RangeError(`"${text}": port must be 0-65535`);
  const tls = /^https:/i.test(t);
  return { host: host.replace(/^\[|\]$/g, ''), port: n, url: t, ...(tls ? { tls } : {}) };
}

/**
 * The management settings of `opts`, or undefined when no listener is
 * asked for. Everything is checked here, before the dispatcher starts.
 *
 * @throws {@link UsageError} for a bad address, an unreadable or empty
 * token file, or an https address without a readable certificate and key.
 */
export function managementSettings(opts: Options): ManagementSettings | undefined {
  let listen: ListenAddress[] = [];
  const flag = opts.string('listen');
  if (flag !== undefined) {
    try {
      listen = [parseListen(flag)];
    } catch (err) {
      throw new UsageError(`--listen: ${describeError(err)}; see 'arvados-dispatch ${opts.command} --help'`);
    }
  } else {
    const v = opts.configValue('listen')?.value;
    if (Array.isArray(v)) listen = v as ListenAddress[];
  }
  const file = opts.string('management-token-file');
  let token: string | undefined;
  if (file !== undefined) {
    let mode: number;
    try {
      // One open file for both, so the mode checked is that of the file read.
      const fd = openSync(file, 'r');
      try {
        mode = fstatSync(fd).mode;
        token = readFileSync(fd, 'utf8').trim();
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      throw new UsageError(`--management-token-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`);
    }
    // As ssh does with private keys: a secret others can read is no secret.
    if (mode & 0o077) {
      throw new UsageError(`--management-token-file: ${file} is accessible by group or others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`);
    }
    if (!token) throw new UsageError(`--management-token-file: ${file} is empty`);
    if (/\s/.test(token)) throw new UsageError(`--management-token-file: ${file} holds more than one word`);
  } else {
    const v = opts.configValue(MANAGEMENT_TOKEN)?.value;
    if (typeof v === 'string' && v.trim()) token = v.trim();
  }
  if (listen.length === 0) return undefined;
  const tls = listen.some((a) => a.tls) ? tlsFiles(opts) : undefined;
  return { listen, token, ...(tls ? { tls } : {}) };
}

/**
 * The config's `TLS.Certificate` and `TLS.Key` (paths, optionally
 * `file://`), read as the Go services read them.
 *
 * @throws {@link UsageError} naming the key when one is missing or unreadable.
 */
function tlsFiles(opts: Options): { cert: Buffer; key: Buffer } {
  const read = (flag: string, key: string): Buffer => {
    const v = opts.configValue(flag)?.value;
    if (typeof v !== 'string' || v.trim() === '') throw new UsageError(`an https:// management address needs ${key} in the cluster config`);
    const path = v.trim().replace(/^file:\/\//, '');
    try {
      return readFileSync(path);
    } catch (err) {
      throw new UsageError(`${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`);
    }
  };
  return { cert: read(TLS_CERTIFICATE, 'TLS.Certificate'), key: read(TLS_KEY, 'TLS.Key') };
}

/** A running management listener and what feeds it. */
export interface Service {
  readonly server: ManagementServer;
  readonly metrics: DispatchMetrics;
  readonly health: HealthMonitor;
  close(): Promise<void>;
}

/** Options of {@link startService}. */
export interface StartServiceOptions {
  /** The config file read, if any: its load time, mtime and hash are exported as Arvados services do. */
  config?: ConfigSourceInfo;
}

/**
 * Starts the management listener for `d` (call before `d.run()`), masks the
 * token in all output, and says where it listens. The caller closes it after
 * the dispatcher stopped.
 *
 * @throws {@link CliError} when no address can be listened on.
 */
export async function startService(settings: ManagementSettings, out: Output, d: Dispatcher, pollInterval: number, opts: StartServiceOptions = {}): Promise<Service> {
  if (settings.token) out.addSecret(settings.token);
  const metrics = new DispatchMetrics();
  registerVersionMetrics(metrics.registry, packageVersion(), opts.config);
  const health = new HealthMonitor().watch('api', pollInterval);
  // A runner with a scheduler (through the Runner interface): its queue reads are watched too.
  const runner = d.runner;
  const schedulerInterval = runner?.status?.queueIntervalMs;
  if (schedulerInterval !== undefined) health.watch('scheduler', () => runner?.status?.queueIntervalMs ?? schedulerInterval);
  observeDispatcher(metrics, health, d);
  let server: ManagementServer;
  try {
    server = await startManagementServer({ listen: settings.listen, token: settings.token, ...(settings.tls ? { tls: settings.tls } : {}), health, metrics, dispatch: d });
  } catch (err) {
    if (err instanceof ManagementServerError) throw new CliError(err.message);
    throw err;
  }
  const what = settings.token ? 'health, metrics, containers' : 'disabled: no ManagementToken, every request is answered 404';
  out.event('listening', `management API on ${server.protocol}://${server.address}/ (${what})`, { address: server.address, protocol: server.protocol, enabled: settings.token !== undefined });
  return { server, metrics, health, close: () => server.close() };
}
