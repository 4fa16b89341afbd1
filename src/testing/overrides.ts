/**
 * Canned answers FakeArvados gives on a route instead of serving it (like
 * the Go SDK's ServerStub), for a number of requests or until cleared.
 *
 * @module
 */
import type { RouteName } from './routes.js';

/** A canned answer for {@link FakeArvados.override}. */
export interface OverrideResponse {
  status: number;
  /** A JSON-able value, or a raw string sent as is. */
  body?: unknown;
  headers?: Record<string, string>;
  /** How many requests to answer this way; default: until cleared. */
  times?: number;
}

/** The overrides in force, by route. */
export class Overrides {
  readonly #byRoute = new Map<RouteName, OverrideResponse>();

  /** Answers `route` with `response` from now on (a copy: its `times` counts down). */
  set(route: RouteName, response: OverrideResponse): void {
    this.#byRoute.set(route, { ...response });
  }

  /** Removes the override of `route`, or of every route. */
  clear(route?: RouteName): void {
    if (route) this.#byRoute.delete(route);
    else this.#byRoute.clear();
  }

  /** The answer for one request on `route`, if overridden; uses up one of its `times`. */
  take(route: RouteName): OverrideResponse | undefined {
    const override = this.#byRoute.get(route);
    if (override?.times !== undefined && --override.times <= 0) this.#byRoute.delete(route);
    return override;
  }
}
