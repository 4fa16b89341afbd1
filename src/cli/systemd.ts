/**
 * The systemd notification protocol (sd_notify) for `Type=notify` units,
 * as the Go services speak it: `READY=1` once the service really serves,
 * `STOPPING=1` when a clean stop begins, `WATCHDOG=1` every half
 * `WATCHDOG_USEC` while the service is healthy.
 *
 * Each message is one datagram on the AF_UNIX socket named by
 * `NOTIFY_SOCKET`. Node's `dgram` has no unix datagram sockets, so the
 * optional dependency `unix-dgram` (a small native addon) sends it; a child
 * `systemd-notify` would not do, since systemd accepts messages only from
 * the unit's main process unless the unit says `NotifyAccess=all`. Without
 * `NOTIFY_SOCKET` (not started by systemd) nothing is sent and the addon is
 * not loaded.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { logger } from '../log.js';
import { describeError } from '../util/errors.js';

const log = logger('systemd');

/** The part of `unix-dgram` used here. */
interface DgramSocket {
  on(event: 'error', listener: (err: Error) => void): unknown;
  send(buf: Buffer, offset: number, length: number, path: string, callback: (err?: Error) => void): void;
  close(): void;
}
interface DgramModule {
  createSocket(type: 'unix_dgram'): DgramSocket;
}

/** Sends one datagram to `path`; rejects with the system's error. */
export type DatagramSender = (path: string, message: Buffer) => Promise<void>;

/** The sender of `unix-dgram`, or why there is none. */
function loadSender(): DatagramSender | Error {
  let mod: DgramModule;
  try {
    mod = createRequire(import.meta.url)('unix-dgram') as DgramModule;
  } catch (err) {
    return new Error(`the optional package unix-dgram is not installed or could not be built (${describeError(err)})`);
  }
  return (path, message) =>
    new Promise<void>((resolve, reject) => {
      // One socket per message, closed at once, as sd_notify(3) does: no handle keeps the process alive.
      let sock: DgramSocket;
      try {
        sock = mod.createSocket('unix_dgram');
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      sock.on('error', (err) => reject(err));
      sock.send(message, 0, message.length, path, (err) => {
        try {
          sock.close();
        } catch {
          // Closing a socket that failed to send can fail too; nothing is left to free.
        }
        if (err) reject(err);
        else resolve();
      });
    });
}

/** Options of {@link SystemdNotifier}. */
export interface SystemdNotifierOptions {
  /** Where `NOTIFY_SOCKET` and `WATCHDOG_USEC` / `WATCHDOG_PID` are read. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Sends a datagram (for tests). Default: `unix-dgram`. */
  send?: DatagramSender;
  /** Told once about anything that stops notifications from working. */
  warn?: (message: string) => void;
}

/**
 * Talks to systemd when started by it; does nothing otherwise. Every
 * method is safe to call in any order and any number of times: `READY=1`
 * and `STOPPING=1` are each sent at most once, the watchdog only between
 * them.
 */
export class SystemdNotifier {
  /** The socket path, when systemd gave one. */
  readonly socket: string | undefined;
  /** Ms between watchdog pings (half `WATCHDOG_USEC`), when systemd asks for them. */
  readonly watchdogInterval: number | undefined;
  readonly #send: DatagramSender | undefined;
  readonly #warn: (message: string) => void;
  #ready = false;
  #stopping = false;
  #warned = false;
  #timer: NodeJS.Timeout | undefined;
  #healthy: () => boolean = () => true;
  /** The messages in flight, so that {@link flush} can wait for them. */
  #pending = new Set<Promise<void>>();

  constructor(opts: SystemdNotifierOptions = {}) {
    const env = opts.env ?? process.env;
    this.#warn = opts.warn ?? (() => {});
    const socket = env.NOTIFY_SOCKET?.trim();
    if (!socket) return;
    if (socket.startsWith('@')) {
      // unix-dgram cannot address the abstract namespace; systemd gives system services a path.
      this.#once(`NOTIFY_SOCKET "${socket}" is an abstract socket, which is not supported: systemd will not hear READY=1`);
      return;
    }
    if (!socket.startsWith('/')) {
      this.#once(`NOTIFY_SOCKET "${socket}" is not an absolute path: ignoring it`);
      return;
    }
    const sender = opts.send ?? loadSender();
    if (sender instanceof Error) {
      this.#once(`NOTIFY_SOCKET is set but ${sender.message}: systemd will not hear READY=1 (use Type=simple, or install unix-dgram)`);
      return;
    }
    this.socket = socket;
    this.#send = sender;
    const usec = Number(env.WATCHDOG_USEC);
    const pid = env.WATCHDOG_PID === undefined ? process.pid : Number(env.WATCHDOG_PID);
    if (Number.isSafeInteger(usec) && usec > 0 && pid === process.pid) this.watchdogInterval = Math.max(1, Math.floor(usec / 2000));
  }

  /** Whether messages are sent at all (started by systemd with a usable socket). */
  get enabled(): boolean {
    return this.#send !== undefined;
  }

  /**
   * `READY=1` (once), then watchdog pings while `healthy()` holds (a
   * missed ping lets systemd restart a stuck service).
   */
  ready(healthy: () => boolean = () => true): void {
    if (this.#ready || this.#stopping) return;
    this.#ready = true;
    this.#healthy = healthy;
    this.#notify('READY=1');
    if (this.watchdogInterval !== undefined && this.enabled) {
      this.#timer = setInterval(() => {
        if (this.#healthy()) this.#notify('WATCHDOG=1');
        else log('not pinging the watchdog: unhealthy');
      }, this.watchdogInterval);
      this.#timer.unref();
    }
  }

  /** `STOPPING=1` (once, and only after `READY=1`); ends the watchdog pings. */
  stopping(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#timer);
    if (this.#ready) this.#notify('STOPPING=1');
  }

  /** Ends the watchdog pings without a message, and waits for messages in flight. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.allSettled([...this.#pending]);
  }

  #notify(text: string): void {
    const send = this.#send;
    const path = this.socket;
    if (!send || !path) return;
    log('notify %s', text.replace(/\n/g, ' '));
    const p = send(path, Buffer.from(text, 'utf8')).catch((err: unknown) => this.#once(`cannot notify systemd on ${path}: ${describeError(err)}`));
    this.#pending.add(p);
    void p.finally(() => this.#pending.delete(p));
  }

  #once(message: string): void {
    log(message);
    if (this.#warned) return;
    this.#warned = true;
    this.#warn(message);
  }
}
