/**
 * `ContainerApi`: the calls a dispatcher makes, and nothing else. The
 * Dispatcher and its parts (queue reads, lock, release, confirmation) talk
 * to this interface only, so they run the same over {@link ArvadosClient}
 * (which has every one of these methods) and over an in-memory API for
 * unit tests (`MemoryContainerApi` in `arvados-dispatch/testing`).
 *
 * @module
 */
import type { ArvadosClient } from '../client/client.js';

/**
 * The calls a dispatcher makes, with {@link ArvadosClient}'s signatures:
 * identify its token, list (one page, or every page by UUID) and read
 * containers, lock, unlock and update them, write a `logs` record, and the
 * credentials a runner hands to crunch-run. Errors are
 * {@link ArvadosApiError}s (status 422 for a lost lock race, 404 for a
 * container that is gone, 503/429 for an overloaded API).
 */
export type ContainerApi = Pick<
  ArvadosClient,
  | 'currentAuthorization'
  | 'listContainers'
  | 'pageContainers'
  | 'getContainer'
  | 'updateContainer'
  | 'lockContainer'
  | 'unlockContainer'
  | 'createLog'
  | 'credentialsEnv'
>;
