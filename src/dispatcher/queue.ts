/**
 * `ContainerQueue`: what one poll reads of the API's container queue. It
 * decides which queries a poll makes (a sweep, an incremental poll, or one
 * woken by events that reads only the containers they named; see
 * watermark.ts), walks every page of each, and merges the answers into one
 * snapshot: the newest record of each container that matters, and whether
 * every query succeeded. It keeps no container state of its own: what the
 * records mean is the Dispatcher's business, what to lock the scheduler's.
 *
 * @module
 */
import type { Container, Filter, SelectedContainer } from '../types.js';
import { isAbortOf } from '../util/errors.js';
import type { ContainerApi } from './api.js';
import { MAX_ITEMS_PER_QUERY, QUEUE_FIELDS, SUMMARY_FIELDS } from './poll.js';
import type { PollKind, PollPlan } from './watermark.js';

/** Most UUIDs in one `uuid in [...]` filter: bounds the URL and the server's query. */
export const UUID_BATCH = 100;

/** The answer to one query: what was read, and whether it was all of it. */
export interface QueryResult<T = Container> {
  ok: boolean;
  items: T[];
}

/** What one poll read. */
export interface QueueSnapshot {
  /** The newest record of each container that matters to this poll, in no particular order. */
  readonly records: Container[];
  /** Every query succeeded and returned only well-formed records. */
  readonly complete: boolean;
  /** Queued containers with priority > 0 listed. */
  readonly queued: number;
  /** The poll was a sweep: a tracked container it did not list may be gone. */
  readonly sweep: boolean;
  /** Own containers were read in full (nothing was held, so all are to be adopted). */
  readonly fullMine: boolean;
  /** Call once the poll is judged (`healthy`: nothing failed after the reads either). */
  done(healthy: boolean): void;
}

/** How the queue reads what this dispatcher holds. */
export interface QueueHoldings {
  /** This token's UUID. */
  readonly me: string;
  /** Whether a container is held here. */
  holds(uuid: string): boolean;
  /** How many containers are held here. */
  readonly size: number;
}

/** The poll's queries over a {@link ContainerApi}. */
export class ContainerQueue {
  readonly #api: ContainerApi;
  readonly #batchSize: number;
  readonly #plan: PollPlan | undefined;
  readonly #onError: (err: unknown) => void;
  /** Containers events named since the last poll, for an event-woken poll that reads only them. */
  readonly named = new Set<string>();

  /**
   * @param plan - sweeps and incremental polls (undefined: every poll is a sweep).
   * @param onError - told about every failed query (not about aborts).
   */
  constructor(api: ContainerApi, batchSize: number, plan: PollPlan | undefined, onError: (err: unknown) => void) {
    this.#api = api;
    this.#batchSize = batchSize;
    this.#plan = plan;
    this.#onError = onError;
  }

  /** Whether polls may be incremental (otherwise every regular poll is a sweep). */
  get incremental(): boolean {
    return this.#plan !== undefined;
  }

  /** Makes the next regular poll a sweep. */
  forceSweep(why: string): void {
    this.#plan?.forceSweep(why);
  }

  /**
   * Reads one poll's worth. A regular poll is a sweep or an incremental
   * poll; otherwise it reads only the containers named by events. Every
   * kind also lists the Queued containers: lock order is decided over the
   * whole queue.
   */
  async read(regular: boolean, held: QueueHoldings, signal: AbortSignal): Promise<QueueSnapshot> {
    const me = held.me;
    const kind: PollKind | undefined = regular ? (this.#plan?.next() ?? { kind: 'sweep', why: 'every poll' }) : undefined;
    const named = [...this.named];
    this.named.clear();
    const sweep = kind?.kind === 'sweep';

    // The watermark of a sweep: the newest modified_at in the cluster, read
    // before anything else, so every later change is stamped at or after it.
    let newest: unknown;
    let complete = true;
    if (sweep && this.#plan) {
      const top = await this.#newestModifiedAt(signal);
      complete = top.ok;
      newest = top.value;
    }
    const queuedQ: Filter[] = [['state', '=', 'Queued'], ['priority', '>', '0']];
    // A sweep reads its two big lists side by side; the small requests of
    // other polls go one after another, on one kept-alive connection rather
    // than a TLS handshake each when the server has closed idle ones.
    const queuedP = sweep ? this.fetch(queuedQ, signal, QUEUE_FIELDS) : undefined;
    let changed: QueryResult[];
    // Holding nothing (a start or restart), every own container listed is
    // to be adopted and its runner needs the full record: read them in the
    // list itself, pages of batchSize, rather than summaries and then
    // batches of 100 by UUID.
    const fullMine = sweep && held.size === 0;
    if (sweep) {
      changed = [await this.fetch([['locked_by_uuid', '=', me]], signal, fullMine ? undefined : SUMMARY_FIELDS)];
    } else if (kind?.kind === 'incremental') {
      // Held containers at priority 0 too: the API recomputes priorities
      // (a cancel) without touching modified_at.
      changed = [await this.fetch([['modified_at', '>=', kind.since]], signal, SUMMARY_FIELDS)];
      changed.push(await this.fetch([['locked_by_uuid', '=', me], ['priority', '=', 0]], signal, SUMMARY_FIELDS));
    } else {
      changed = [];
      for (let i = 0; i < named.length; i += UUID_BATCH) changed.push(await this.fetch([['uuid', 'in', named.slice(i, i + UUID_BATCH)]], signal, SUMMARY_FIELDS));
    }
    const queued = await (queuedP ?? this.fetch(queuedQ, signal, QUEUE_FIELDS));
    complete &&= queued.ok && changed.every((r) => r.ok);

    // A container can show up in several answers if it changed between the
    // reads; act on the newer record only. Beyond a sweep, the containers
    // that matter are those held or locked by this token: Queued ones come
    // from the Queued query, with the fields that order them.
    const latest = new Map<string, Container>();
    for (const r of changed) {
      for (const c of r.items) {
        if (sweep || held.holds(c.uuid) || c.locked_by_uuid === me) latest.set(c.uuid, c);
      }
    }
    for (const c of queued.items) {
      const prev = latest.get(c.uuid);
      if (!prev || (c.modified_at ?? '') >= (prev.modified_at ?? '')) latest.set(c.uuid, c);
    }
    const plan = this.#plan;
    return {
      records: [...latest.values()],
      complete,
      queued: queued.items.length,
      sweep,
      fullMine,
      done: (healthy) => {
        if (kind && plan) plan.done(kind.kind, healthy, sweep ? [newest] : changed[0].items.map((c) => c.modified_at));
      },
    };
  }

  /** Full records of `uuids`, {@link UUID_BATCH} per query; `ok: false` if any query failed. */
  async byUuid(uuids: readonly string[], signal: AbortSignal): Promise<QueryResult> {
    const out: QueryResult = { ok: true, items: [] };
    for (let i = 0; i < uuids.length; i += UUID_BATCH) {
      const got = await this.fetch([['uuid', 'in', uuids.slice(i, i + UUID_BATCH)]], signal);
      out.ok &&= got.ok;
      out.items.push(...got.items);
    }
    return out;
  }

  /**
   * Every page of a query (only the `select`ed fields, if given); on
   * failure, whatever was read and `ok: false`.
   */
  async fetch<K extends keyof Container = keyof Container>(filters: Filter[], signal: AbortSignal, select?: readonly K[]): Promise<QueryResult<SelectedContainer<K>>> {
    const items: Array<SelectedContainer<K>> = [];
    let complete = true;
    try {
      for await (const page of this.#api.pageContainers<K>({ filters, limit: this.#batchSize, select, maxItems: MAX_ITEMS_PER_QUERY }, { signal })) {
        items.push(...page.items);
        // A dropped (malformed) item may be a tracked container: not seeing
        // it proves nothing, so nothing may be declared gone this cycle.
        if (page.dropped > 0) complete = false;
      }
      return { ok: complete, items };
    } catch (err) {
      if (!isAbortOf(err, signal)) this.#onError(err);
      return { ok: false, items };
    }
  }

  /** The newest `modified_at` of any container (one item, newest first); `ok: false` if the request failed. */
  async #newestModifiedAt(signal: AbortSignal): Promise<{ ok: boolean; value: unknown }> {
    try {
      const page = await this.#api.listContainers({ order: ['modified_at desc'], limit: 1, count: 'none', select: ['uuid', 'modified_at'] }, { signal });
      return { ok: page.dropped === 0, value: page.items[0]?.modified_at };
    } catch (err) {
      if (!isAbortOf(err, signal)) this.#onError(err);
      return { ok: false, value: undefined };
    }
  }
}
