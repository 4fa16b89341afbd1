/**
 * The management listener: health, metrics and the dispatch API in the
 * shapes of Arvados' cloud dispatcher, so the controller (Workbench's
 * "scheduling status"), the health aggregator and Prometheus can read it.
 * Every path, including unknown ones, needs `Authorization: Bearer
 * <ManagementToken>`, as the Go services require; with no ManagementToken
 * configured, every request is answered 404 `disabled`, as theirs are.
 * `https` addresses serve TLS with the configured certificate.
 *
 * @module
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { logger } from '../log.js';
import type { DispatchEntry } from '../dispatcher/dispatcher.js';
import type { ReleaseAction } from '../dispatcher/runner.js';
import { checkDuration } from '../util/duration.js';
import { describeError } from '../util/errors.js';
import { checkBearer } from './auth.js';
import type { HealthMonitor } from './health.js';
import type { DispatchMetrics } from './metrics.js';

const log = logger('server');

/** What the dispatch API reads and acts on: a `Dispatcher` is one. */
export interface DispatchView {
  /** The containers held, and the Queued ones waiting to be locked. */
  entries(): Iterable<DispatchEntry>;
  /** Cancels a held container with `reason` on it; `none` if it is not held. */
  kill(uuid: string, reason: string): Promise<ReleaseAction>;
}

/** Options of {@link startManagementServer}. */
export interface ManagementServerOptions {
  /**
   * Addresses to try in order; the first one this host can listen on is
   * used (as Go services pick their InternalURL). `tls`: serve HTTPS with
   * {@link ManagementServerOptions.tls}.
   */
  listen: ReadonlyArray<{ host: string; port: number; tls?: boolean }>;
  /**
   * The management token. Without one (empty or undefined) the listener
   * still starts and answers every request 404 `disabled`, as the Go
   * services do when `ManagementToken` is not configured.
   */
  token: string | undefined;
  /** The certificate and key (PEM) for addresses with `tls`. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  health: HealthMonitor;
  metrics: DispatchMetrics;
  dispatch: DispatchView;
  /**
   * Most connections open at once; more are closed as they arrive, so
   * clients that connect and wait cannot use up this process's file
   * descriptors (crunch-run needs some to start). Default
   * {@link MANAGEMENT_MAX_CONNECTIONS}.
   */
  maxConnections?: number;
  /**
   * A connection with nothing sent or received for this many ms is closed,
   * authenticated or not (health checks and scrapes take milliseconds).
   * Default {@link MANAGEMENT_IDLE_TIMEOUT}.
   */
  idleTimeout?: number;
}

/** Default of {@link ManagementServerOptions.maxConnections}. */
export const MANAGEMENT_MAX_CONNECTIONS = 64;
/** Default of {@link ManagementServerOptions.idleTimeout}, ms. */
export const MANAGEMENT_IDLE_TIMEOUT = 10_000;
/** Largest request head (request line and headers) read, bytes. */
const MAX_HEADER_SIZE = 8 * 1024;

/** A running management listener. */
export interface ManagementServer {
  /** `host:port` it listens on. */
  readonly address: string;
  /** `http` or `https`. */
  readonly protocol: 'http' | 'https';
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/** Why the listener did not start: the message names the address and the cause. */
export class ManagementServerError extends Error {
  override name = 'ManagementServerError';
}

/** A form body bigger than this is refused (the kill form is a few hundred bytes). */
const MAX_BODY = 64 * 1024;

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function error(res: http.ServerResponse, status: number, message: string): void {
  send(res, status, { errors: [message] });
}

/**
 * The fields of a container the cloud dispatcher fills in its queue entries;
 * nothing else is shown, so no field that may carry a secret (runtime_token,
 * mounts, environment) can leave through this API.
 */
const CONTAINER_FIELDS = ['uuid', 'state', 'priority', 'runtime_constraints', 'container_image', 'scheduling_parameters', 'created_at'] as const;

function count(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0;
}

/**
 * What a container asks for, in the shape of the cloud dispatcher's
 * `InstanceResources`: vCPUs, RAM (ram + keep_cache_ram), GPUs and their
 * VRAM. Scratch is left 0: the entry's record carries no mounts.
 */
function instanceResources(c: DispatchEntry['container']): Record<string, number> {
  const rc = c.runtime_constraints ?? {};
  const gpu = rc.gpu && count(rc.gpu.device_count) > 0 ? rc.gpu : undefined;
  return {
    VCPUs: count(rc.vcpus),
    RAM: count(rc.ram) + count(rc.keep_cache_ram),
    Scratch: 0,
    GPUs: gpu ? count(gpu.device_count) : count(rc.cuda?.device_count),
    GPUVRAM: gpu ? count(gpu.vram) : 0,
  };
}

/**
 * A queue entry in both shapes controllers decode: the older documented
 * one (`container`, `instance_type`, `scheduling_status`) and Arvados
 * HEAD's (`instance_types`, `instance_resources`, `first_seen_at`).
 */
function entryJson(e: DispatchEntry): Record<string, unknown> {
  const c = e.container as unknown as Record<string, unknown>;
  const container: Record<string, unknown> = {};
  for (const f of CONTAINER_FIELDS) container[f] = c[f] ?? null;
  const types = e.instance_types ?? [];
  return {
    container,
    instance_type: types[0] ?? null,
    instance_types: types,
    instance_resources: instanceResources(e.container),
    first_seen_at: e.first_seen_at ?? null,
    scheduling_status: e.scheduling_status,
  };
}

function findEntry(view: DispatchView, uuid: string): DispatchEntry | undefined {
  for (const e of view.entries()) if (e.container.uuid === uuid) return e;
  return undefined;
}

/** Query parameters, plus a urlencoded form body for POST (Go's FormValue reads both). */
async function params(req: http.IncomingMessage, url: URL): Promise<URLSearchParams> {
  const out = new URLSearchParams(url.search);
  if (req.method !== 'POST' || !/^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) return out;
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new RangeError('request body too large');
    chunks.push(chunk as Buffer);
  }
  for (const [k, v] of new URLSearchParams(Buffer.concat(chunks).toString('utf8'))) if (!out.has(k)) out.set(k, v);
  return out;
}

async function handle(opts: ManagementServerOptions, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (!opts.token) {
    // Go's health handler with no ManagementToken: plain text, as http.Error writes it.
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
    res.end('disabled\n');
    return;
  }
  const auth = checkBearer(req.headers.authorization, opts.token);
  if (auth !== 'ok') {
    error(res, auth, auth === 401 ? 'Unauthorized' : 'Forbidden');
    return;
  }
  const url = new URL(req.url ?? '/', 'http://localhost');
  const route = `${req.method ?? 'GET'} ${url.pathname}`;
  switch (route) {
    case 'GET /_health/ping': {
      const h = opts.health.check();
      send(res, 200, h.ok ? { health: 'OK' } : { health: 'ERROR', error: h.reason });
      return;
    }
    case 'GET /metrics': {
      const text = await opts.metrics.text();
      res.writeHead(200, { 'Content-Type': opts.metrics.contentType });
      res.end(text);
      return;
    }
    case 'GET /arvados/v1/dispatch/containers':
      send(res, 200, { items: [...opts.dispatch.entries()].map(entryJson) });
      return;
    case 'GET /arvados/v1/dispatch/container': {
      const uuid = url.searchParams.get('container_uuid');
      if (!uuid) return error(res, 400, 'container_uuid parameter not provided');
      const e = findEntry(opts.dispatch, uuid);
      if (!e) return error(res, 404, 'container not found');
      send(res, 200, entryJson(e));
      return;
    }
    case 'POST /arvados/v1/dispatch/containers/kill': {
      const p = await params(req, url);
      const uuid = p.get('container_uuid');
      if (!uuid) return error(res, 400, 'container_uuid parameter not provided');
      if (!findEntry(opts.dispatch, uuid)) return error(res, 404, 'container not found');
      const reason = p.get('reason')?.trim();
      log('kill %s via the management API: %s', uuid, reason ?? '');
      const action = await opts.dispatch.kill(uuid, `via management API${reason ? `: ${reason}` : ''}`);
      if (action === 'none') return error(res, 404, 'container not held by this dispatcher');
      send(res, 200, {});
      return;
    }
    default: {
      const known = ['/_health/ping', '/metrics', '/arvados/v1/dispatch/containers', '/arvados/v1/dispatch/container', '/arvados/v1/dispatch/containers/kill'];
      if (known.includes(url.pathname)) return error(res, 405, 'method not allowed');
      error(res, 404, 'not found');
    }
  }
}

function listenOn(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

/**
 * Starts the management listener on the first address of `opts.listen`
 * this host can listen on.
 *
 * @throws {@link ManagementServerError} when no address can be listened
 * on, or an https address has no certificate.
 */
export async function startManagementServer(opts: ManagementServerOptions): Promise<ManagementServer> {
  if (opts.listen.length === 0) throw new ManagementServerError('no address to listen on');
  const idle = checkDuration('idleTimeout', opts.idleTimeout ?? MANAGEMENT_IDLE_TIMEOUT, 1);
  const maxConnections = opts.maxConnections ?? MANAGEMENT_MAX_CONNECTIONS;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new ManagementServerError(`maxConnections must be an integer >= 1, got ${String(maxConnections)}`);
  const busy = new WeakSet<Socket>();
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    // A request being answered (a kill can take a while) is not idleness.
    busy.add(req.socket);
    res.once('close', () => busy.delete(req.socket));
    handle(opts, req, res).catch((err: unknown) => {
      log('management request %s %s failed: %s', req.method, req.url, describeError(err));
      if (!res.headersSent) error(res, err instanceof RangeError ? 413 : 500, err instanceof RangeError ? err.message : 'internal error');
      else res.destroy();
    });
  };
  const serverOptions = { maxHeaderSize: MAX_HEADER_SIZE, connectionsCheckingInterval: Math.min(idle, 1_000) };
  const failures: string[] = [];
  for (const a of opts.listen) {
    let server: http.Server;
    if (a.tls) {
      if (!opts.tls) {
        failures.push(`${a.host}:${a.port}: an https address needs TLS.Certificate and TLS.Key`);
        continue;
      }
      try {
        server = https.createServer({ ...serverOptions, cert: opts.tls.cert, key: opts.tls.key }, onRequest);
      } catch (err) {
        throw new ManagementServerError(`cannot use the TLS certificate and key: ${describeError(err)}`);
      }
    } else {
      server = http.createServer(serverOptions, onRequest);
    }
    // Slow or idle clients must not hold sockets open for ever: a connection
    // that sends nothing is closed after `idle` ms (server.timeout), one that
    // is slow to send its head or request after at most 10 or 30 s.
    server.requestTimeout = 30_000;
    server.headersTimeout = Math.min(10_000, idle);
    server.keepAliveTimeout = Math.min(5_000, idle);
    server.timeout = idle;
    server.on('timeout', (socket: Socket) => {
      if (!busy.has(socket)) socket.destroy();
    });
    server.maxConnections = maxConnections;
    try {
      await listenOn(server, a.host, a.port);
      const addr = server.address() as AddressInfo;
      const address = `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
      log('management listener on %s', address);
      const s = server;
      return {
        address,
        protocol: a.tls ? 'https' : 'http',
        close: () =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      failures.push(`${a.host}:${a.port}: ${code === 'EADDRINUSE' ? 'address in use' : code === 'EADDRNOTAVAIL' ? 'not an address of this host' : code === 'EACCES' ? 'permission denied' : describeError(err)}`);
    }
  }
  throw new ManagementServerError(`cannot start the management listener (${failures.join('; ')})`);
}
