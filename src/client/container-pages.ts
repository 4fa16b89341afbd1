/**
 * Listing containers: the request for one page and how its answer is
 * checked (malformed items left out and counted, more items than the limit
 * refused, a size bound on pages of small fields), and the keyset walk over
 * every page.
 *
 * @module
 */
import { isContainerUuid } from '../uuid.js';
import type { Container, ContainerList, Filter, ListParams, SelectedContainer } from '../types.js';
import type { ApiRequest } from './caller.js';
import { ArvadosProtocolError } from './errors.js';
import { DEFAULT_MAX_WALK_ITEMS } from './options.js';
import { checkListEnvelope, containerCheck } from './schemas.js';

/**
 * Container fields whose size does not depend on what a user put in the
 * container (no command, mounts, environment, runtime_status...): a page of
 * only these fields is small, and its size is bounded by its `limit`.
 */
const SMALL_FIELDS = new Set<string>([
  'uuid', 'kind', 'etag', 'state', 'priority', 'locked_by_uuid', 'auth_uuid', 'lock_count', 'modified_at', 'created_at',
  'started_at', 'finished_at', 'exit_code', 'owner_uuid', 'runtime_constraints', 'progress', 'cost', 'subrequests_cost',
]);
/** Bytes allowed per item of a page of {@link SMALL_FIELDS}, and for the envelope. */
const SMALL_ITEM_BYTES = 16 * 1024;
const ENVELOPE_BYTES = 64 * 1024;

/** One page as the client returns it, with what the walk needs. */
export interface ListAnswer<K extends keyof Container> {
  page: ContainerList<SelectedContainer<K>>;
  /** Items in the answer, dropped ones included. */
  raw: number;
  /** The last valid container uuid among them: where the next page starts. */
  cursor?: string;
}

/** Told of each item left out of a page: the item, its uuid when valid, and why. */
export type OnDropped = (item: unknown, uuid: string | undefined, reason: string) => void;

/** `GET containers` for one page of `params`. */
export function listRequest<K extends keyof Container>(params: ListParams<K>, onDropped: OnDropped): ApiRequest<ListAnswer<K>> {
  const select = params.select ? [...new Set<string>([...params.select, 'uuid'])] : undefined;
  const check = containerCheck(select);
  return {
    method: 'GET',
    path: 'containers',
    pattern: 'containers',
    query: { ...params, ...(select ? { select } : {}) },
    // A page of small fields is bounded by its limit: a huge one is a bad
    // answer, refused while it arrives rather than after it is parsed.
    ...(select && params.limit !== undefined && select.every((f) => SMALL_FIELDS.has(f))
      ? { maxBytes: ENVELOPE_BYTES + params.limit * SMALL_ITEM_BYTES }
      : {}),
    accept: (parsed) => {
      const env = checkListEnvelope(parsed);
      if (!env.ok) return env;
      const raw = env.value.items;
      // More items than asked for is a bad answer, not a bigger page to keep.
      if (params.limit !== undefined && raw.length > params.limit) return { ok: false, reason: `${raw.length} items for limit ${params.limit}` };
      const items: SelectedContainer<K>[] = [];
      let cursor: string | undefined;
      for (const item of raw) {
        const uuid = (item as { uuid?: unknown } | null)?.uuid;
        if (isContainerUuid(uuid)) cursor = uuid;
        const r = check(item);
        if (r.ok) items.push(r.value);
        else onDropped(item, isContainerUuid(uuid) ? uuid : undefined, r.reason);
      }
      const { offset = 0, limit = raw.length } = env.value;
      const page: ContainerList<SelectedContainer<K>> = {
        ...env.value,
        offset,
        limit,
        items,
        dropped: raw.length - items.length,
      };
      return { ok: true, value: { page, raw: raw.length, cursor } };
    },
  };
}

/** What {@link walkContainerPages} takes: `pageContainers`' parameters. */
export type WalkParams<K extends keyof Container> = Omit<ListParams<K>, 'order' | 'offset' | 'count'> & { maxItems?: number };

/**
 * Every page of a container query in UUID order, with a `uuid > last`
 * cursor, fetched with `list`; see `ArvadosClient.pageContainers` for the
 * rules.
 */
export async function* walkContainerPages<K extends keyof Container>(
  list: (params: ListParams<K>) => Promise<ListAnswer<K>>,
  params: WalkParams<K>,
): AsyncGenerator<ContainerList<SelectedContainer<K>>, void, undefined> {
  const { maxItems = DEFAULT_MAX_WALK_ITEMS, ...rest } = params;
  const filters: readonly Filter[] = rest.filters ?? [];
  const limit = rest.limit ?? 1000;
  let last: string | undefined;
  let seen = 0;
  for (;;) {
    // Pages that never end (valid, ever-increasing UUIDs) must not grow memory for ever.
    if (seen >= maxItems) {
      throw new ArvadosProtocolError({
        status: 200,
        errors: [`the query returned more than ${maxItems} items; stopped reading`],
        retryable: false,
        request: 'GET containers',
        attempts: 1,
      });
    }
    const { page, raw, cursor } = await list({
      ...rest,
      filters: last === undefined ? filters : [...filters, ['uuid', '>', last]],
      order: ['uuid asc'],
      count: 'none',
      limit,
    });
    if (raw === 0) return;
    seen += raw;
    yield page;
    const applied = page.limit > 0 ? page.limit : limit;
    // Without any identifiable item there is no cursor to go on from; the
    // page's dropped count already tells the caller the walk is incomplete.
    if (raw < applied || cursor === undefined) return;
    // A server that does not honour the cursor would loop forever; stop instead.
    if (last !== undefined && cursor <= last) {
      throw new ArvadosProtocolError({
        status: 200,
        errors: ['server ignored the uuid paging cursor'],
        retryable: false,
        request: 'GET containers',
        attempts: 1,
      });
    }
    last = cursor;
  }
}
