/**
 * Event wake-ups: the API's event stream (events.ts) only ever wakes the
 * poll loop. An event about a container held here, or a fresh subscription
 * (which may have missed events), wakes it at once; any other event waits
 * for the wake budget (see pacing.ts), since every poll reads the Queued
 * list anyway. The UUIDs events name are kept for an event-woken poll that
 * reads only them (see queue.ts).
 *
 * @module
 */
import type { ArvadosClient } from '../client/client.js';
import { logger } from '../log.js';
import type { Clock } from '../util/sleep.js';
import { ContainerEventStream } from './events.js';
import type { DispatcherEventOptions } from './options.js';
import type { PollPacer } from './pacing.js';
import type { ContainerQueue } from './queue.js';

const log = logger('dispatcher');

/** Most UUIDs named by events kept for one event-woken poll; beyond it, a regular poll comes at once instead. */
const MAX_NAMED = 1_000;

/** What the wake-ups need of their Dispatcher. */
export interface WakeupHost {
  /** The `events` option; undefined when turned off. */
  readonly options: DispatcherEventOptions | undefined;
  /** The HTTP client, whose server's websocket is the stream; none over an in-memory API. */
  readonly client: ArvadosClient | undefined;
  readonly clock: Clock;
  /** The dispatcher's abort signal. */
  readonly signal: AbortSignal;
  /** Ms between regular polls, for the log. */
  readonly pollInterval: number;
  readonly queue: Pick<ContainerQueue, 'named' | 'incremental' | 'forceSweep'>;
  readonly pacer: Pick<PollPacer, 'wake'>;
  /** Whether a container is held here. */
  holds(uuid: string): boolean;
  /** Logs and emits a warning (redacted). */
  warn(message: string): void;
}

/**
 * Starts the event stream listener that wakes the poll loop, unless events
 * are turned off or there is no HTTP client; returns it, to stop it.
 */
export function startWakeups(host: WakeupHost): ContainerEventStream | undefined {
  const o = host.options;
  // The event stream is the API server's websocket: none over an in-memory API.
  const client = host.client;
  if (!o || !client) return undefined;
  const signal = host.signal;
  const url = o.url ?? (async (): Promise<string | undefined> => {
    const doc = await client.discovery({ signal });
    return doc.websocketUrl || undefined;
  });
  const listener = new ContainerEventStream({
    url,
    token: client.credentialsEnv().ARVADOS_API_TOKEN,
    insecure: client.insecure,
    requireTls: client.baseUrl.startsWith('https://') && !client.insecure,
    // The stream must trust what the client trusts (e.g. FakeArvados' own certificate).
    ca: o.ca ?? (typeof client.ca === 'string' ? client.ca : client.ca?.slice()),
    clock: host.clock,
  });
  const { queue, pacer, pollInterval } = host;
  listener.on('wake', (uuids) => {
    // A new subscription (no uuids) may have missed events; an event about a
    // container we hold concerns us. Anything else waits for the budget:
    // every poll reads the Queued list anyway.
    const concerns = uuids.length === 0 || uuids.some((u) => host.holds(u));
    if (uuids.length === 0) queue.forceSweep('the event stream (re)connected');
    let regular = uuids.length === 0 || (!queue.incremental && concerns);
    for (const u of uuids) {
      if (queue.named.size >= MAX_NAMED) {
        regular ||= concerns;
        break;
      }
      queue.named.add(u);
    }
    pacer.wake(concerns, regular);
  });
  listener.on('connected', () => log('event stream connected: polling at once on container changes'));
  listener.on('disconnected', (reason, retryIn) => log('event stream lost (%s); polling every %d ms, reconnecting in %d ms', reason, pollInterval, retryIn));
  listener.on('unavailable', (reason, kind) => {
    // A refused cleartext stream is the operator's to know about (once: the listener gives up).
    if (kind === 'cleartext') host.warn(`no event stream: ${reason}; polling every ${pollInterval} ms`);
    else log('no event stream: %s; polling every %d ms', reason, pollInterval);
  });
  listener.start();
  return listener;
}
