/**
 * Select-based polling: list queries ask only for the fields the dispatcher
 * decides on, and full records are fetched only where they are needed (at
 * hand-over, and for tracked containers that changed), in batched
 * `uuid in [...]` requests.
 *
 * Rendering every full record of every tracked container as JSON on every
 * poll is what loads the API server (Rails and PostgreSQL) most; a summary is
 * about a tenth of a realistic record (command, mounts, environment and
 * runtime constraints make up the rest).
 *
 * @module
 */
import type { ContainerApi } from './api.js';
import type { Container, Filter, SelectedContainer } from '../types.js';
import { isAbortOf } from '../util/errors.js';

/**
 * What the queries of tracked containers ask for: identity, the fields every
 * decision reads, and `modified_at`, which changes with every update through
 * the API.
 */
export const SUMMARY_FIELDS = ['uuid', 'state', 'priority', 'locked_by_uuid', 'modified_at'] as const satisfies ReadonlyArray<keyof Container>;

/**
 * What the Queued query asks for: the summary plus `created_at`, which
 * orders equal priorities, `runtime_constraints`, by which a runner's
 * `capacity()` sizes the candidates (how many of them fit now), and
 * `scheduling_parameters`, which says which are workflow runners (the
 * supervisor cap).
 */
export const QUEUE_FIELDS = [...SUMMARY_FIELDS, 'created_at', 'runtime_constraints', 'scheduling_parameters'] as const satisfies ReadonlyArray<keyof Container>;

/** A container as the queue queries list it: the {@link QUEUE_FIELDS} (the tracked query lacks `created_at`). */
export type Summary = SelectedContainer<(typeof SUMMARY_FIELDS)[number]> & Partial<Pick<Container, 'created_at'>>;

/**
 * Most items one query of a poll cycle reads: past it the walk stops and the
 * cycle is incomplete (nothing is concluded from absence), so a server whose
 * pages never end costs bounded memory. Far above any real queue.
 */
export const MAX_ITEMS_PER_QUERY = 100_000;

/**
 * Most UUIDs in one `uuid in [...]` filter: it bounds the request (it goes
 * as a form body beyond ~1 KB) and the server's query.
 */
export const MAX_UUIDS_PER_REQUEST = 100;

/**
 * Whether a listed summary says something the record we hold does not: any
 * selected field differs, or the summary has no `modified_at` to compare.
 * Comparing the selected fields, not only `modified_at`, matters: the API
 * server recomputes priorities with a bare SQL update that leaves
 * `modified_at` (and the event stream) untouched.
 */
export function changedSince(summary: Summary, record: Readonly<Container>): boolean {
  return (
    summary.modified_at === undefined ||
    summary.modified_at !== record.modified_at ||
    summary.state !== record.state ||
    summary.priority !== record.priority ||
    (summary.locked_by_uuid ?? null) !== (record.locked_by_uuid ?? null)
  );
}

/** Full records fetched by UUID; `ok` is false if any request failed. */
export interface FullRecords {
  ok: boolean;
  records: Map<string, Container>;
}

/** How {@link fetchFull} and {@link FullRecordPrefetch} report a failed request (already described, one line). */
export type FetchErrorHandler = (err: unknown) => void;

/**
 * The records of `uuids` (at most `limit`): one request, unless the server
 * caps pages lower; then more, walking by UUID like `pageContainers`. Stops
 * as soon as every record asked for is in, which saves the empty page a
 * plain walk would need to learn that a full page was the last.
 */
async function fetchChunk(client: ContainerApi, uuids: string[], limit: number, signal: AbortSignal): Promise<Map<string, Container>> {
  const wanted = new Set(uuids);
  const out = new Map<string, Container>();
  let last: string | undefined;
  for (;;) {
    const filters: Filter[] = [['uuid', 'in', uuids]];
    if (last !== undefined) filters.push(['uuid', '>', last]);
    const page = await client.listContainers({ filters, order: ['uuid asc'], count: 'none', limit }, { signal });
    let next: string | undefined;
    const before = out.size;
    for (const c of page.items) {
      next = c.uuid;
      // A record we did not ask for is the server's mistake; never act on it.
      if (wanted.has(c.uuid)) out.set(c.uuid, c);
    }
    // A full page without any record asked for: a server sending pages of
    // other records for ever would keep this loop going; stop instead.
    if (out.size === before && page.items.length > 0) throw new Error('the server answered a uuid query with records not asked for');
    // The client left out malformed items: the records not read are fetched again next cycle.
    const applied = page.limit > 0 ? page.limit : limit;
    if (out.size === wanted.size || page.items.length + page.dropped < applied || next === undefined) return out;
    // A server that ignores the cursor would make this loop for ever.
    if (last !== undefined && next <= last) throw new Error('the server ignored the uuid paging cursor');
    last = next;
  }
}

function chunks(uuids: readonly string[], size: number): string[][] {
  const n = Math.max(1, Math.min(size, MAX_UUIDS_PER_REQUEST));
  const out: string[][] = [];
  for (let i = 0; i < uuids.length; i += n) out.push(uuids.slice(i, i + n));
  return out;
}

/**
 * Full records of `uuids`, `batch` (at most {@link MAX_UUIDS_PER_REQUEST})
 * per request, one request at a time. A UUID missing from the answer was
 * deleted in between. On a failed request, the rest is still fetched and
 * `ok` is false: the caller treats the cycle as incomplete.
 */
export async function fetchFull(
  client: ContainerApi,
  uuids: readonly string[],
  batch: number,
  signal: AbortSignal,
  onError: FetchErrorHandler,
): Promise<FullRecords> {
  const records = new Map<string, Container>();
  let ok = true;
  for (const chunk of chunks(uuids, batch)) {
    if (signal.aborted) return { ok: false, records };
    try {
      for (const [k, v] of await fetchChunk(client, chunk, batch, signal)) records.set(k, v);
    } catch (err) {
      ok = false;
      if (!isAbortOf(err, signal)) onError(err);
    }
  }
  return { ok, records };
}

/**
 * Full records of lock candidates, fetched in order a batch at a time while
 * the locks go on, a little ahead of them: the lock path never waits for
 * more than the first batch, and at most two batches are held before they
 * are used.
 */
export class FullRecordPrefetch {
  readonly #client: ContainerApi;
  readonly #signal: AbortSignal;
  readonly #onError: FetchErrorHandler;
  readonly #batch: number;
  readonly #chunks: string[][];
  readonly #chunkOf = new Map<string, number>();
  readonly #fetches: Array<Promise<Map<string, Container> | undefined>> = [];

  constructor(client: ContainerApi, uuids: readonly string[], batch: number, signal: AbortSignal, onError: FetchErrorHandler) {
    this.#client = client;
    this.#signal = signal;
    this.#onError = onError;
    this.#batch = batch;
    this.#chunks = chunks(uuids, batch);
    this.#chunks.forEach((c, i) => c.forEach((u) => this.#chunkOf.set(u, i)));
    this.#ensure(1);
  }

  /**
   * The full record of `uuid`, or undefined if its batch failed or the
   * container is gone. Never rejects.
   */
  async get(uuid: string): Promise<Container | undefined> {
    const i = this.#chunkOf.get(uuid);
    if (i === undefined) return undefined;
    this.#ensure(i + 1);
    const got = await this.#fetches[i];
    return got?.get(uuid);
  }

  /** Starts the fetches of chunks up to `last`, each after the one before it. */
  #ensure(last: number): void {
    for (let i = this.#fetches.length; i <= Math.min(last, this.#chunks.length - 1); i++) {
      const before = this.#fetches[i - 1] ?? Promise.resolve(undefined);
      this.#fetches.push(
        before.then(async () => {
          if (this.#signal.aborted) return undefined;
          try {
            return await fetchChunk(this.#client, this.#chunks[i], this.#batch, this.#signal);
          } catch (err) {
            if (!isAbortOf(err, this.#signal)) this.#onError(err);
            return undefined;
          }
        }),
      );
    }
  }
}
