/**
 * Waiting for a container of the fake to reach a state, driven by the
 * store's change notifications rather than by polling.
 *
 * @module
 */
import type { Container, ContainerState } from '../types.js';
import type { Store } from './store.js';

/** Options of {@link FakeArvados.waitForState}. */
export interface WaitForStateOptions {
  /** Milliseconds before the wait rejects. Default 30 000; 0 for none. */
  timeout?: number;
  signal?: AbortSignal;
}

/**
 * Resolves with the container once its state is one of `state`; see
 * {@link FakeArvados.waitForState} for when it rejects.
 */
export function waitForState(store: Store, uuid: string, state: ContainerState | readonly ContainerState[], opts: WaitForStateOptions = {}): Promise<Container> {
  const wanted: readonly ContainerState[] = typeof state === 'string' ? [state] : state;
  const timeout = opts.timeout ?? 30_000;
  return new Promise<Container>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let unsubscribe = (): void => {};
    const onAbort = (): void => finish(() => reject(opts.signal?.reason));
    const finish = (settle: () => void): void => {
      unsubscribe();
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      settle();
    };
    const check = (): boolean => {
      const row = store.row(uuid);
      if (!row) {
        finish(() => reject(new Error(`waitForState: container ${uuid} does not exist (waiting for ${wanted.join(' or ')})`)));
        return true;
      }
      if (wanted.includes(row.state)) {
        const c = store.present(row);
        finish(() => resolve(c));
        return true;
      }
      if (row.state === 'Cancelled') {
        finish(() => reject(new Error(`waitForState: container ${uuid} is Cancelled and can never be ${wanted.join(' or ')}`)));
        return true;
      }
      return false;
    };
    if (opts.signal?.aborted) return reject(opts.signal.reason);
    if (check()) return;
    unsubscribe = store.onChange((change) => {
      if (change.object_uuid === uuid) check();
    });
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (timeout > 0) {
      timer = setTimeout(() => {
        const now = store.row(uuid)?.state;
        finish(() => reject(new Error(`waitForState: container ${uuid} is still ${now} after ${timeout} ms (waiting for ${wanted.join(' or ')})`)));
      }, timeout);
    }
  });
}
