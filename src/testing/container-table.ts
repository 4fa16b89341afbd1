/**
 * The stored containers and `GET containers` over them: filters, order,
 * offset and limit, `count`, and the server's page size cap.
 *
 * @module
 */
import type { ContainerListEnvelope } from '../types.js';
import { presentRow, type ContainerRow } from './container-row.js';
import { ApiError } from './errors.js';
import { comparator, compileFilters, resolveOrder, resolveSelect, uuidLowerBound } from './query.js';

/** What `list()` takes: the list parameters after HTTP decoding. */
export interface ListQuery {
  filters?: unknown;
  order?: unknown;
  limit?: unknown;
  offset?: unknown;
  count?: unknown;
  select?: unknown;
}

/** Containers by uuid, with a sorted index for uuid-ordered pages. */
export class ContainerTable {
  readonly #rows = new Map<string, ContainerRow>();
  // UUIDs in sorted order, rebuilt lazily: lets uuid-ordered pages skip a full sort.
  #sorted: string[] = [];
  #sortedDirty = false;

  /** The stored row (not a copy). */
  get(uuid: string): ContainerRow | undefined {
    return this.#rows.get(uuid);
  }

  /** Whether a container with this uuid exists. */
  has(uuid: string): boolean {
    return this.#rows.has(uuid);
  }

  /** Adds a new row under `uuid`. */
  add(uuid: string, row: ContainerRow): void {
    this.#rows.set(uuid, row);
    this.#sortedDirty = true;
  }

  /** Removes a row; returns it, or undefined when there was none. */
  delete(uuid: string): ContainerRow | undefined {
    const row = this.#rows.get(uuid);
    if (row && this.#rows.delete(uuid)) {
      this.#sortedDirty = true;
      return row;
    }
    return undefined;
  }

  /** All stored rows (not copies). */
  values(): IterableIterator<ContainerRow> {
    return this.#rows.values();
  }

  /** How many containers there are. */
  get size(): number {
    return this.#rows.size;
  }

  /**
   * `GET containers` with at most `maxItemsPerResponse` items a page; the
   * items share objects with the rows (serialise them at once).
   */
  list(q: ListQuery, maxItemsPerResponse: number): ContainerListEnvelope {
    const select = resolveSelect(q.select);
    const match = compileFilters(q.filters);
    const order = resolveOrder(q.order, select);
    const limit = intParam(q.limit, 'limit', 100);
    const offset = intParam(q.offset, 'offset', 0);
    const count = q.count ?? 'exact';
    if (count !== 'exact' && count !== 'none' && count !== '') {
      throw new ApiError(422, "count parameter must be 'exact' or 'none'");
    }
    const effLimit = Math.min(limit, maxItemsPerResponse);
    const exact = count !== 'none';

    let page: ContainerRow[];
    let available = 0;
    if (order[0]?.column === 'uuid') {
      // Walk the sorted index: no sort, and without a count we can stop early.
      const uuids = this.#sortedUuids();
      const desc = order[0].desc;
      const bound = desc ? undefined : uuidLowerBound(q.filters);
      let i = desc ? uuids.length - 1 : bound ? lowerBound(uuids, bound.value, bound.inclusive) : 0;
      page = [];
      let skipped = 0;
      for (; desc ? i >= 0 : i < uuids.length; desc ? i-- : i++) {
        const row = this.#rows.get(uuids[i])!;
        if (!match(row)) continue;
        available++;
        if (skipped < offset) skipped++;
        else if (page.length < effLimit) page.push(row);
        else if (!exact) break;
      }
    } else {
      const all: ContainerRow[] = [];
      for (const row of this.#rows.values()) if (match(row)) all.push(row);
      all.sort(comparator(order));
      available = all.length;
      page = all.slice(offset, offset + effLimit);
    }
    const out: ContainerListEnvelope = {
      kind: 'arvados#containerList',
      etag: '',
      self_link: '',
      offset,
      limit: effLimit,
      items: page.map((r) => presentRow(r, select, true, false)),
    };
    if (exact) out.items_available = available;
    return out;
  }

  #sortedUuids(): string[] {
    if (this.#sortedDirty) {
      this.#sorted = [...this.#rows.keys()].sort();
      this.#sortedDirty = false;
    }
    return this.#sorted;
  }
}

/** A non-negative integer list parameter, `dflt` when absent. */
function intParam(v: unknown, name: string, dflt: number): number {
  if (v === undefined || v === null || v === '') return dflt;
  const s = String(v);
  if (!/^\d+$/.test(s)) throw new ApiError(422, `Invalid value for ${name} parameter`);
  return Number(s);
}

/** First index in sorted `arr` whose value is > (or >= when inclusive) `value`. */
function lowerBound(arr: string[], value: string, inclusive: boolean): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid] < value || (!inclusive && arr[mid] === value)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
