/**
 * What FakeArvados remembers of the requests it served: a counter per route
 * and, unless turned off, a record of each request.
 *
 * @module
 */
import type { FaultKind } from './faults.js';
import type { RouteName } from './routes.js';

/** One served request, as kept in {@link FakeArvados.requests}. */
export interface RequestRecord {
  route: RouteName;
  method: string;
  path: string;
  /** The container UUID in the path, if any. */
  uuid?: string;
  /** UUID of the token used, if it was valid. */
  tokenUuid?: string;
  status: number;
  requestId: string;
  /** The list parameters, for `containers.list`. */
  params?: Record<string, unknown>;
  fault?: FaultKind | 'override';
  /** What a hostile fault served, e.g. the JSON of the hostile uuid or identity. */
  faultDetail?: string;
}

/** Per-route counters and the request records. */
export class RequestLog {
  /** The records kept, oldest first (empty when not recording). */
  readonly requests: RequestRecord[];
  readonly #counts = new Map<RouteName, number>();
  readonly #recording: boolean;

  /**
   * @param recording - whether {@link RequestLog.keep} keeps records.
   * @param requests - the array to keep them in (the server's own, which tests read).
   */
  constructor(recording: boolean, requests: RequestRecord[] = []) {
    this.#recording = recording;
    this.requests = requests;
  }

  /** Counts one request on `route`. */
  counted(route: RouteName): void {
    this.#counts.set(route, (this.#counts.get(route) ?? 0) + 1);
  }

  /** Keeps `record` (when recording); it is filled in as the request is answered. */
  keep(record: RequestRecord): void {
    if (this.#recording) this.requests.push(record);
  }

  /** Requests counted on `route`, or on every route. */
  count(route?: RouteName): number {
    if (route) return this.#counts.get(route) ?? 0;
    let n = 0;
    for (const v of this.#counts.values()) n += v;
    return n;
  }

  /** The counters per route. */
  counts(): Partial<Record<RouteName, number>> {
    return Object.fromEntries(this.#counts);
  }

  /** Clears the counters and the records. */
  reset(): void {
    this.#counts.clear();
    this.requests.length = 0;
  }
}
