/**
 * Event-driven wakeups: a client of the Arvados event stream (websocket
 * protocol v0, as served by `services/ws` at the discovery document's
 * `websocketUrl`) that tells the dispatcher to poll as soon as a container
 * changes, instead of waiting for the next poll interval.
 *
 * The stream is only a hint. Events carry no record worth trusting (services/ws
 * passes on little more than `state`), may be lost while disconnected, and the
 * server ignores most subscription filters; so an event only ever triggers a
 * poll, and the poll decides. When the stream is unavailable, polling alone
 * works as it always did.
 *
 * @module
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { logger } from '../log.js';
import { backoffDelay } from '../client/retry.js';
import { checkDuration } from '../util/duration.js';
import { describeError } from '../util/errors.js';
import { Redactor } from '../util/redact.js';
import { after, realClock, type Clock } from '../util/sleep.js';
import { isContainerUuid } from '../uuid.js';

const log = logger('events');

/**
 * What we subscribe to. services/ws honours only the `event_type` filter and
 * ignores the `object_uuid` one, so every event is also checked here; a
 * server that does honour it sends less.
 */
const SUBSCRIBE = JSON.stringify({
  method: 'subscribe',
  filters: [
    ['event_type', 'in', ['create', 'update', 'delete']],
    ['object_uuid', 'is_a', 'arvados#container'],
  ],
});
const CONTAINER_EVENTS = new Set(['create', 'update', 'delete']);

/** Options of {@link ContainerEventStream}. */
export interface ContainerEventStreamOptions {
  /**
   * The event stream's URL (`wss://host/websocket`), or a function giving it
   * (asked before every connection attempt; `undefined` means the cluster
   * has no event stream, and the listener gives up for good).
   */
  url: string | (() => Promise<string | undefined>);
  /** The API token. It goes in the URL, as the protocol requires; it is never logged. */
  token: string;
  /** Skip TLS verification (ARVADOS_API_HOST_INSECURE). Default false. */
  insecure?: boolean;
  /**
   * Refuse a cleartext `ws://` URL (the token goes in the URL): set when the
   * API itself is https, so a discovery document cannot send the token
   * elsewhere in clear. The listener then gives up (`unavailable`, kind
   * `cleartext`). Default false.
   */
  requireTls?: boolean;
  /** Extra trusted CA certificates (PEM), e.g. a test server's. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Events within this many ms make one wakeup. Default 5. */
  debounce?: number;
  /** First reconnect delay in ms; later ones double, with jitter. Default 1 000. */
  minBackoff?: number;
  /** Cap on the reconnect delay in ms. Default 60 000. */
  maxBackoff?: number;
  /**
   * A subscription that lasts less than this many ms before the connection
   * drops does not reset the backoff: a stream that drops right after each
   * subscription is retried ever more slowly, not every `minBackoff`
   * (each subscription also wakes a poll). Default 30 000.
   */
  stableAfter?: number;
  /**
   * A connection that has received nothing (not even the server's `{}`
   * pings, sent every minute by default) for this many ms is taken for dead
   * and replaced. Default 180 000.
   */
  idleTimeout?: number;
  /** The clock of every wait and timer here (reconnects, idle timeout, debounce); default the real one. */
  clock?: Clock;
  /** For tests: randomness for the backoff jitter. */
  random?: () => number;
}

/** Why {@link ContainerEventStream} gave up on the event stream. */
export type EventStreamUnavailable = 'none' | 'unusable' | 'cleartext';

/** Events of {@link ContainerEventStream}. */
export interface ContainerEventStreamEvents {
  /** Containers changed (UUIDs, deduplicated): time to poll. Also sent after every (re)subscription, since events may have been missed. */
  wake: [uuids: string[]];
  /** Subscribed; events flow. */
  connected: [];
  /** The connection failed or ended; `reason` is one line, with the token masked. A reconnect follows after `retryIn` ms. */
  disconnected: [reason: string, retryIn: number];
  /**
   * The cluster has no event stream (`none`), advertises one this listener
   * cannot use (`unusable`), or a cleartext one that `requireTls` refuses
   * (`cleartext`); the listener stopped trying.
   */
  unavailable: [reason: string, kind: EventStreamUnavailable];
}

/**
 * Listens to container events and emits debounced `wake` events.
 *
 * @example
 * ```ts
 * const events = new ContainerEventStream({ url: 'wss://ws.example/websocket', token });
 * events.on('wake', () => pollNow());
 * events.start();
 * // ...
 * await events.stop();
 * ```
 */
export class ContainerEventStream extends EventEmitter<ContainerEventStreamEvents> {
  readonly #opts: ContainerEventStreamOptions;
  readonly #redactor: Redactor;
  readonly #clock: Clock;
  readonly #ac = new AbortController();
  readonly #pending = new Set<string>();
  /** Cancels the pending debounce timer, while one is pending. */
  #flushTimer: (() => void) | undefined;
  #ws: WebSocket | undefined;
  #loop: Promise<void> | undefined;
  #connected = false;
  /** Why the last connection ended, for the `disconnected` event. */
  #lastReason = '';

  constructor(opts: ContainerEventStreamOptions) {
    super();
    if (!opts || typeof opts.token !== 'string' || opts.token === '') throw new TypeError('token is required');
    for (const k of ['debounce', 'minBackoff', 'maxBackoff', 'idleTimeout', 'stableAfter'] as const) {
      if (opts[k] !== undefined) checkDuration(k, opts[k]);
    }
    this.#opts = opts;
    this.#redactor = new Redactor([opts.token, encodeURIComponent(opts.token)]);
    this.#clock = opts.clock ?? realClock;
  }

  /** Whether a subscription is live right now. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Starts connecting (in the background). Idempotent. */
  start(): void {
    this.#loop ??= this.#run().catch((err: unknown) => log('event listener stopped: %s', this.#describe(err)));
  }

  /** Closes the connection and stops reconnecting. Idempotent; resolves when everything is released. */
  async stop(): Promise<void> {
    if (!this.#ac.signal.aborted) this.#ac.abort(new Error('event listener stopped'));
    this.#flushTimer?.();
    this.#flushTimer = undefined;
    this.#pending.clear();
    this.#ws?.terminate();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#ac.signal;
    let failures = 0;
    // Consecutive subscriptions that dropped before stableAfter.
    let flaps = 0;
    while (!signal.aborted) {
      let url: string | null | undefined;
      let reason: string;
      try {
        url = typeof this.#opts.url === 'string' ? this.#opts.url : await this.#opts.url();
      } catch (err) {
        url = null;
        reason = `cannot find the event stream's URL: ${this.#describe(err)}`;
      }
      if (signal.aborted) return;
      // Some clusters advertise the stream as https://; the websocket scheme is meant.
      if (typeof url === 'string') url = url.replace(/^http(s?):\/\//i, 'ws$1://');
      if (url === undefined || (url !== null && !/^wss?:\/\//i.test(url))) {
        const why = url === undefined
          ? 'the cluster advertises no event stream (no websocketUrl)'
          : `unusable websocketUrl ${JSON.stringify(this.#redactor.redact(url.split('?')[0]))}`;
        log('%s; polling only', why);
        this.emit('unavailable', why, url === undefined ? 'none' : 'unusable');
        return;
      }
      if (url !== null && this.#opts.requireTls && /^ws:\/\//i.test(url)) {
        const why = `refusing the cleartext event stream ${JSON.stringify(this.#redactor.redact(url.split('?')[0]))}: the API is https and the token would travel in clear (set insecure to allow it)`;
        log('%s; polling only', why);
        this.emit('unavailable', why, 'cleartext');
        return;
      }
      if (url !== null) {
        const began = this.#clock.now();
        const subscribed = await this.#session(url);
        if (signal.aborted) return;
        if (subscribed) {
          failures = 0;
          flaps = this.#clock.now() - began < (this.#opts.stableAfter ?? 30_000) ? flaps + 1 : 0;
        }
        reason = this.#lastReason;
      }
      // The first quick drop is retried as soon as any drop; each further one waits longer.
      const delay = backoffDelay(failures++ + Math.max(0, flaps - 1), {
        retries: Infinity,
        baseDelay: this.#opts.minBackoff ?? 1000,
        maxDelay: this.#opts.maxBackoff ?? 60_000,
        maxRetryAfter: 0,
      }, this.#opts.random);
      this.emit('disconnected', reason!, Math.round(delay));
      try {
        await this.#clock.sleep(delay, signal);
      } catch {
        return;
      }
    }
  }

  /** One connection, until it ends. Resolves true if it got as far as a subscription. */
  #session(url: string): Promise<boolean> {
    return new Promise((resolve) => {
      const target = `${url}${url.includes('?') ? '&' : '?'}api_token=${encodeURIComponent(this.#opts.token)}`;
      const ws = new WebSocket(target, {
        rejectUnauthorized: !this.#opts.insecure,
        ...(this.#opts.ca ? { ca: this.#opts.ca } : {}),
        handshakeTimeout: 30_000,
        // The server's answers are small; a huge frame is a broken server.
        maxPayload: 4 << 20,
        followRedirects: false,
      });
      this.#ws = ws;
      this.#lastReason = '';
      let subscribed = false;
      let idle: (() => void) | undefined;
      const idleMs = this.#opts.idleTimeout ?? 180_000;
      // Cancelled on close, so it never keeps the process up on its own.
      const touch = (): void => {
        idle?.();
        idle = after(this.#clock, idleMs, () => {
          this.#lastReason = `nothing received for ${idleMs} ms`;
          ws.terminate();
        });
      };
      ws.on('open', () => {
        log('connected to %s', url.split('?')[0]);
        touch();
        ws.send(SUBSCRIBE);
      });
      ws.on('message', (data, isBinary) => {
        touch();
        if (isBinary) return;
        const wasSubscribed = subscribed;
        subscribed = this.#receive(String(data), subscribed);
        if (subscribed && !wasSubscribed) {
          this.#connected = true;
          this.emit('connected');
          // Events may have been missed while we were not subscribed.
          this.#schedule(undefined);
        }
      });
      ws.on('error', (err) => {
        this.#lastReason = this.#describe(err);
      });
      ws.on('close', (code, reason) => {
        idle?.();
        this.#connected = false;
        this.#ws = undefined;
        if (!this.#lastReason || subscribed) {
          this.#lastReason = `connection closed (${code}${reason.length ? ` ${this.#redactor.redact(String(reason))}` : ''})`;
        }
        if (!this.#ac.signal.aborted) log('event stream ended: %s', this.#lastReason);
        resolve(subscribed);
      });
    });
  }

  /** Handles one message; returns whether the session is subscribed afterwards. */
  #receive(text: string, subscribed: boolean): boolean {
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      log('ignoring a message that is not JSON');
      return subscribed;
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return subscribed;
    const m = msg as Record<string, unknown>;
    if ('status' in m) {
      if (m.status === 200) return true;
      log('subscription answered with status %s', String(m.status));
      return subscribed;
    }
    const uuid = m.object_uuid;
    if (typeof uuid !== 'string' || !isContainerUuid(uuid)) return subscribed;
    if (typeof m.event_type !== 'string' || !CONTAINER_EVENTS.has(m.event_type)) return subscribed;
    this.#schedule(uuid);
    return subscribed;
  }

  #schedule(uuid: string | undefined): void {
    if (this.#ac.signal.aborted) return;
    if (uuid !== undefined) this.#pending.add(uuid);
    this.#flushTimer ??= after(this.#clock, this.#opts.debounce ?? 5, () => {
      this.#flushTimer = undefined;
      const uuids = [...this.#pending];
      this.#pending.clear();
      try {
        this.emit('wake', uuids);
      } catch (err) {
        // A throwing listener must not become an uncaught exception in a timer.
        log('a wake listener threw: %s', this.#describe(err));
      }
    });
  }

  #describe(err: unknown): string {
    // Redact whole before anything cuts it: the token is in the URL.
    return this.#redactor.redact(describeError(err));
  }
}
