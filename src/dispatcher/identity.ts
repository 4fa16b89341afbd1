/**
 * Who a Dispatcher is: the API token's own record, read once at the start
 * of `run()`. The record is kept without the token's secret, and a failure
 * to read it says which side is wrong, since it ends the run.
 *
 * @module
 */
import { ArvadosApiError, ArvadosProtocolError } from '../client/errors.js';
import type { ApiClientAuthorization } from '../types.js';
import { describeError, isAbortOf } from '../util/errors.js';
import type { ContainerApi } from './api.js';

/**
 * Reads the token's record and gives it, without `api_token`, to
 * `identified` (whose throw counts as a failure to identify). Resolves
 * without calling it if `signal` aborted the read.
 *
 * @throws Error saying why the token could not be identified.
 */
export async function identify(api: Pick<ContainerApi, 'currentAuthorization'>, signal: AbortSignal, identified: (auth: ApiClientAuthorization) => void): Promise<void> {
  try {
    // The answer repeats the token's secret (api_token): nothing here needs
    // it, and `auth` goes to event listeners that may print it.
    const { api_token: _secret, ...auth } = await api.currentAuthorization({ signal });
    identified(auth);
  } catch (err) {
    if (isAbortOf(err, signal)) return;
    // Say which side is wrong: "cannot reach" for an answer that arrived
    // sends the operator after the network instead of the server.
    const reason =
      err instanceof ArvadosProtocolError
        ? 'the API server sent an invalid answer'
        : !(err instanceof ArvadosApiError) || err.status === 0
          ? 'cannot reach the API server'
          : err.status === 401
            ? 'the API token was rejected'
            : 'the API server answered with an error';
    throw new Error(`error getting my token UUID (${reason}): ${describeError(err)}`);
  }
}
