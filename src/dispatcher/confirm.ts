/**
 * Confirming before letting go: a list answer that says a tracked container
 * vanished, was requeued, finished or changed hands is one answer, and a
 * wrong one (a proxy, a bad replica, a server bug) would otherwise end every
 * stream at once, and the runners would stop and cancel their containers.
 * Only a direct `GET containers/{uuid}` decides; if it cannot be read, nothing
 * changes this cycle.
 *
 * The reads are bounded: at most {@link MAX_CONFIRMS_PER_CYCLE} per poll
 * cycle (the rest wait for the next one) and {@link CONFIRM_CONCURRENCY} at
 * a time, so a cycle of nonsense answers about many containers costs a
 * bounded number of requests.
 *
 * @module
 */
import type { ContainerApi } from './api.js';
import { ArvadosApiError } from '../client/errors.js';
import type { Container } from '../types.js';
import { isAbortOf } from '../util/errors.js';

/** Most direct reads made to confirm stream ends in one poll cycle. */
export const MAX_CONFIRMS_PER_CYCLE = 100;
/** Most direct reads in flight at once. */
export const CONFIRM_CONCURRENCY = 4;

/** What the direct read of one container said. */
export type Confirmation =
  | { kind: 'record'; record: Container }
  | { kind: 'gone' } // 404: the container no longer exists
  | { kind: 'unknown' }; // the read failed or was not made this cycle: decide nothing

/**
 * Reads each of `uuids` directly (at most `max`, `concurrency` at a time).
 * Every uuid gets an answer; those not read are `unknown`. `onError` hears
 * about failed reads (not aborts, not 404s). Never rejects.
 */
export async function confirmByDirectRead(
  client: ContainerApi,
  uuids: readonly string[],
  signal: AbortSignal,
  onError: (err: unknown) => void,
  opts: { max?: number; concurrency?: number } = {},
): Promise<Map<string, Confirmation>> {
  const max = opts.max ?? MAX_CONFIRMS_PER_CYCLE;
  const concurrency = Math.max(1, opts.concurrency ?? CONFIRM_CONCURRENCY);
  const out = new Map<string, Confirmation>();
  for (const u of uuids) out.set(u, { kind: 'unknown' });
  const todo = uuids.slice(0, max);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < todo.length && !signal.aborted) {
      const uuid = todo[next++];
      try {
        const record = await client.getContainer(uuid, { signal });
        // The client checks the answer names the uuid asked for; a mismatch is a protocol error.
        out.set(uuid, { kind: 'record', record });
      } catch (err) {
        if (err instanceof ArvadosApiError && err.status === 404) out.set(uuid, { kind: 'gone' });
        else if (!isAbortOf(err, signal)) onError(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker));
  return out;
}
