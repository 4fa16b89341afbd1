// Driving a client whose waits are on a test clock while its requests go
// over real sockets.
import type { TestClock } from '../../src/testing/index.js';

/**
 * Settles `p`, moving `clock` to each wait's end as soon as one is pending;
 * while none is (a request is in flight), real time passes.
 */
export async function onClock<T>(clock: TestClock, p: Promise<T>): Promise<T> {
  let settled = false;
  const done = p.finally(() => (settled = true));
  done.catch(() => {}); // the caller handles it, once returned
  while (!settled) if (!(await clock.next())) await new Promise((r) => setTimeout(r, 1));
  return done;
}
