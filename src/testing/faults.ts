/**
 * Fault injection rules of FakeArvados: the kinds of failure it can serve,
 * the rules tests set, and which fault (if any) a request gets.
 *
 * @module
 */
import { seededRandom } from '../prng.js';
import { HOSTILE_FAULTS, ROUTE_LIMITED_FAULTS, type HostileFaultKind } from './hostile.js';
import type { RouteName } from './routes.js';

/**
 * Ordinary injected failures, what a healthy cluster does on a bad day:
 * - `500`, `502`, `503` (the last two with `Retry-After`), `html` (a 502
 *   proxy error page): answered *before* the request is processed;
 * - `reset` (connection closed with no answer), `truncated` (a 200 whose JSON
 *   is cut short), `hang` (no answer until the client gives up): applied
 *   *after* the request was processed, so the change happened but the client
 *   cannot know. That is the hard case for lock and update calls.
 */
export type OrdinaryFaultKind = 500 | 502 | 503 | 'html' | 'reset' | 'truncated' | 'hang';

/**
 * An injected failure: an {@link OrdinaryFaultKind} or a
 * {@link HostileFaultKind} (malformed items, token-echoing proxy pages,
 * 200-with-errors, endless bodies, bad identities).
 */
export type FaultKind = OrdinaryFaultKind | HostileFaultKind;

/** Every ordinary kind: the default of {@link FaultOptions.kinds}. */
export const ORDINARY_FAULTS: readonly OrdinaryFaultKind[] = [500, 502, 503, 'html', 'reset', 'truncated', 'hang'];

/**
 * One fault injection rule. Several rules may be given at once (an array):
 * each request is checked against them in order, each with its own rate and
 * PRNG, and the first that fires decides the answer.
 */
export interface FaultOptions {
  /** Probability in [0, 1] that a request fails. */
  rate: number;
  /**
   * Kinds to choose from, uniformly among those that apply to the route
   * (`bad-identity` applies to `current` only). Default: the ordinary kinds;
   * hostile kinds are only served when named.
   */
  kinds?: readonly FaultKind[];
  /** Routes that may fail. Default: every route but `discovery`. */
  routes?: readonly RouteName[];
  /** Seed for this rule's PRNG (whether it fires, which kind, which variant), for reproducible runs. Default: random. */
  seed?: number;
  /** `Retry-After` seconds sent with 502/503. Default 0. */
  retryAfter?: number;
}

const KNOWN_FAULTS = new Set<FaultKind>([...ORDINARY_FAULTS, ...HOSTILE_FAULTS]);

/** A fault rule with its PRNG. */
export interface FaultRule {
  opts: FaultOptions;
  random: () => number;
}

/** A fault picked for a request, and the rule that fired. */
export interface PickedFault {
  kind: FaultKind;
  rule: FaultRule;
}

/**
 * The rules for `faults` (one, several, or none when `undefined`), each
 * with its own PRNG; throws a RangeError on a rate outside [0, 1] or an
 * unknown kind.
 */
export function faultRules(faults: FaultOptions | readonly FaultOptions[] | undefined): FaultRule[] {
  const rules = faults === undefined ? [] : Array.isArray(faults) ? (faults as readonly FaultOptions[]) : [faults as FaultOptions];
  for (const f of rules) {
    if (!(f.rate >= 0 && f.rate <= 1)) throw new RangeError(`fault rate must be in [0, 1], got ${f.rate}`);
    for (const k of f.kinds ?? []) if (!KNOWN_FAULTS.has(k)) throw new RangeError(`unknown fault kind ${JSON.stringify(k)}`);
  }
  return rules.map((opts) => ({ opts: { ...opts }, random: opts.seed !== undefined ? seededRandom(opts.seed) : Math.random }));
}

/**
 * The fault a request on `route` gets: the first rule that applies to the
 * route and fires, with a kind chosen uniformly among its kinds that apply
 * to the route; undefined when none fires.
 */
export function pickFault(rules: readonly FaultRule[], route: RouteName): PickedFault | undefined {
  for (const rule of rules) {
    const f = rule.opts;
    if (f.rate <= 0) continue;
    if (f.routes ? !f.routes.includes(route) : route === 'discovery') continue;
    const kinds = (f.kinds?.length ? f.kinds : ORDINARY_FAULTS).filter((k) => {
      const only = typeof k === 'string' ? ROUTE_LIMITED_FAULTS[k as HostileFaultKind] : undefined;
      return !only || only.includes(route);
    });
    if (kinds.length === 0) continue;
    if (rule.random() >= f.rate) continue;
    return { kind: kinds[Math.floor(rule.random() * kinds.length)], rule };
  }
  return undefined;
}
