/**
 * Warnings about list items the client left out because they are not valid
 * containers, rate-limited per item so that a server that keeps sending the
 * same bad item does not flood the log.
 *
 * @module
 */
import type { Clock } from '../util/sleep.js';
import { kindOf } from './answers.js';
import type { ClientWarning } from './options.js';

/** How often the same malformed list item is warned about, at most. */
const WARN_INTERVAL = 10 * 60_000;
/** How many distinct malformed items are remembered for rate-limiting warnings. */
const WARN_MEMORY = 1000;

/** Decides which dropped items are warned about, and says what about them. */
export class DroppedItemWarnings {
  readonly #clock: Clock;
  // Item key -> when it was last warned about; oldest first, so the first is evicted.
  readonly #warned = new Map<string, number>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /**
   * The warning for `item`, left out of a page for `reason`, or undefined
   * when the same item (by `uuid`, a valid container uuid, else by JSON
   * type) was warned about within the interval.
   */
  warning(item: unknown, uuid: string | undefined, reason: string): ClientWarning | undefined {
    const key = uuid ?? `(${kindOf(item)})`;
    const now = this.#clock.now();
    const last = this.#warned.get(key);
    if (last !== undefined && now - last < WARN_INTERVAL) return undefined;
    this.#warned.delete(key);
    if (this.#warned.size >= WARN_MEMORY) this.#warned.delete(this.#warned.keys().next().value!);
    this.#warned.set(key, now);
    const what = uuid ? `container ${uuid}` : `an item (${kindOf(item)}) without a valid container uuid`;
    const warning: ClientWarning = { message: `GET containers: left out ${what}: not a valid container record (${reason})` };
    if (uuid) warning.uuid = uuid;
    return warning;
  }
}
